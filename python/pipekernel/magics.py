"""The IPython extension: %pk LINE and %%pk (a cell of magic lines), run by
pipekernel.run in this process's session.

In `%pk LINE`, IPython first expands {expression} and $name from the Python
namespace, as it does for every line magic ($$ is a literal $); when one of
them is not a Python name IPython leaves the whole line as it is, and $NAME
is then the magic language's (%set, then the environment). The body of
%%pk is not expanded by IPython.
"""
from IPython.core.magic import Magics, line_cell_magic, magics_class


@magics_class
class PipekernelMagics(Magics):
    @line_cell_magic
    def pk(self, line, cell=None):
        """%pk MAGIC ARGS...   run one magic line (with or without its %)
        %%pk                   run the cell's magic lines, one per line

        %pk alone lists the magics; %pk help NAME shows one's help.
        The value of the (last) line is the result: %pk pwd."""
        __tracebackhide__ = True
        from . import _api
        if cell is None:
            text = line.strip() or "%lsmagic"
            if not text.startswith("%"):
                text = "%" + text
        elif line.strip():  # %%pk html ... : the cell magic's name and words on the first line
            text = "%%" + line.strip().lstrip("%") + "\n" + cell
        else:
            text = cell
        return _api.run(text)
