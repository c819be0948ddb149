#!/usr/bin/env python3
"""papermill for pipekernel notebooks.

papermill injects parameters as code in the notebook's language and knows no
translator for "pipeline"; this registers one (each parameter becomes a
`%set NAME=value` line, quoted for the magic language) and then runs
papermill's own command line, so every papermill option works:

    .venv/bin/python tools/papermill_pipeline.py notebooks/cifar10_pipeline.ipynb \\
        out.ipynb -p EPOCHS 2 -p IMAGES_PER_BATCH 10000

The injected cell comes after the notebook's "parameters" cell, whose
`%set --default` lines therefore never override what papermill passed.
"""
import sys

from papermill.translators import Translator, papermill_translators


def quote(text):
    """Single-quote for the magic language (no expansion inside)."""
    return "'" + str(text).replace("'", "'\\''") + "'"


class PipelineTranslator(Translator):
    @classmethod
    def translate_str(cls, val):
        return quote(val)

    @classmethod
    def translate_none(cls, val):
        return "''"

    @classmethod
    def translate_bool(cls, val):
        return "true" if val else "false"

    @classmethod
    def translate_int(cls, val):
        return str(val)

    @classmethod
    def translate_float(cls, val):
        return repr(val)

    @classmethod
    def translate_list(cls, val):
        return quote(" ".join(str(v) for v in val))

    @classmethod
    def translate_dict(cls, val):
        raise ValueError("pipekernel parameters are strings, numbers or lists, not dicts")

    @classmethod
    def comment(cls, cmt_str):
        return f"# {cmt_str}".strip()

    @classmethod
    def assign(cls, name, str_val):
        return f"%set {name}={str_val}"


papermill_translators.register("pipeline", PipelineTranslator)
papermill_translators.register("pipekernel", PipelineTranslator)

if __name__ == "__main__":
    from papermill.cli import papermill

    sys.exit(papermill())
