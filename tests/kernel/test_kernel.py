"""jupyter_kernel_test conformance suite against the built pipekernel.

Every attribute of KernelTests is set, so no test of the suite is skipped.
"""
import os
import unittest

import jupyter_kernel_test as jkt


class PipekernelTests(jkt.KernelTests):
    kernel_name = "pipekernel"
    language_name = "pipeline"
    file_extension = ".pipeline"

    code_hello_world = "%echo hello, world"
    code_stderr = "%echo --stderr something went wrong"

    completion_samples = [
        {"text": "%ec", "matches": {"%echo"}},
        {"text": "%ls", "matches": {"%lsmagic"}},
        {"text": "%echo --st", "matches": {"--stderr"}},
        {"text": "%input 'x' --p", "matches": {"--password"}},
    ]
    complete_code_samples = ["%echo hi", "%echo 'a b'", "# a comment", "%echo a \\\n  b", ""]
    incomplete_code_samples = ["%echo a \\", "%echo 'unterminated", '%echo "open']
    invalid_code_samples = ["echo without a percent sign", "%echo ok\nprint(1)"]

    code_page_something = "%sleep?"
    code_generate_error = "%no-such-magic"
    code_execute_result = [
        {"code": "%set X=1\n%set X", "result": "1"},
        {"code": "%pwd", "result": os.getcwd()},
        {"code": "%env PK_TEST_VALUE", "result": "42"},
    ]
    code_display_data = [
        {"code": "%html <b>x</b>", "mime": "text/html"},
        {"code": "%markdown *x*", "mime": "text/markdown"},
    ]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "%set X=1*"
    code_inspect_sample = "%sleep"
    code_clear_output = "%echo before\n%clear"

    @classmethod
    def setUpClass(cls):
        os.environ["PK_TEST_VALUE"] = "42"  # inherited by the kernel
        super().setUpClass()


if __name__ == "__main__":
    unittest.main()
