"""papermill parameters for notebooks on the Pipeline kernel (kernel
"pipekernel", language "pipeline"):

    papermill nb.ipynb out.ipynb -p EPOCHS 2

papermill writes the parameters as code in the notebook's language, through
a translator it finds by kernel or language name. PipelineTranslator writes
each parameter as a `%set NAME=value` line, the value quoted for the magic
language. papermill (up to 2.7 at least) reads no entry point group for
translators, but it imports every `papermill.engine` entry point when it
starts; this package registers PipelineEngine there (papermill's own
nbclient engine under the name "pipekernel", nothing changed), and
importing this module registers the translator. The package also lists the
translator under `papermill.translators`, for a papermill that reads it.

The injected cell comes after the notebook's "parameters" cell, whose
`%set --default` lines then keep what papermill set.
"""
from papermill.engines import NBClientEngine
from papermill.translators import Translator, papermill_translators

from . import quote

KERNEL = "pipekernel"
LANGUAGE = "pipeline"


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


class PipelineEngine(NBClientEngine):
    """papermill's nbclient engine; registered so that papermill imports
    this module (and with it the translator) when it starts."""


papermill_translators.register(LANGUAGE, PipelineTranslator)
papermill_translators.register(KERNEL, PipelineTranslator)
