"""The exceptions a failing stage raises, one class per error of the stage
contract (ST_ERRNO_MAP in stages/lib/stage.h), named as the Pipeline kernel
names them in its error replies.

Every class is a StageError. Where the kernel's name is also a built-in
exception's (FileNotFoundError, FileExistsError, PermissionError, IOError,
MemoryError, TimeoutError), the class derives from that one too, so
`except FileNotFoundError` catches a missing file of %md5 as it catches
open()'s. An interrupted stage raises the built-in KeyboardInterrupt.

Attributes of a StageError:
  code    the stage's ST_E* code (a negative int)
  ename   the kernel's name for it ("ChecksumError")
  where   the file, member, URL or bucket/key it is about, or None
  offset  a byte offset into `where`, or None
  text    what happened and what was expected
  lineno  the failing line of the cell (1-based), or None
  line    that line's text, without its '%', or None
str(e) is the kernel's evalue: "where: text (at byte N)".
"""
import builtins


class StageError(Exception):
    """A pipeline stage failed; the subclass says how."""

    ename = "StageError"

    def __init__(self, message="", *, code=None, where=None, offset=None, text=None,
                 lineno=None, line=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.where = where
        self.offset = offset
        self.text = message if text is None else text
        self.lineno = lineno
        self.line = line

    def __str__(self):
        return self.message


class UsageError(StageError):
    """A magic's arguments are wrong (unknown option, bad number, arity)."""


class FileNotFoundError(StageError, builtins.FileNotFoundError):
    """No such file or directory."""


class FileExistsError(StageError, builtins.FileExistsError):
    """The file exists."""


class PermissionError(StageError, builtins.PermissionError):
    """Permission denied."""


class IOError(StageError, builtins.OSError):
    """An input/output error (a read failed, a file shrank while it was read)."""


class NoSpaceError(StageError):
    """No space left on the device."""


class MemoryError(StageError, builtins.MemoryError):
    """Out of memory."""


class LimitError(StageError):
    """A limit of stages/lib/limits.h was exceeded."""


class FormatError(StageError):
    """Malformed input (a pickle, an archive, a manifest, a response)."""


class UnsafeInputError(StageError):
    """Input refused as unsafe (an archive member leaving its folder ...)."""


class ChecksumError(StageError):
    """A checksum did not match (md5 of a file, of a manifest entry)."""


class NetworkError(StageError):
    """A network error (connection refused, reset, name not found)."""


class TimeoutError(StageError, builtins.TimeoutError):
    """The operation timed out."""


class TLSError(StageError):
    """TLS verification failed."""


class HTTPError(StageError):
    """The server answered with an HTTP error."""


class S3Error(StageError):
    """The object store answered with an error."""


class CredentialsError(StageError):
    """Credentials were not found."""


class StateError(StageError):
    """State the stage needs is missing (no dataset loaded ...)."""


class NotSupportedError(StageError):
    """Not supported."""


class DeviceError(StageError):
    """A device is not available (no GPU for --device cuda)."""


class UnknownMagicError(StageError):
    """No magic of that name."""


class StdinNotImplementedError(StageError):
    """The stage asked for input where none can be given."""


class InternalError(StageError):
    """An internal error."""


_BY_ENAME = {c.__name__: c for c in StageError.__subclasses__()}
for _c in _BY_ENAME.values():
    _c.ename = _c.__name__
del _c

__all__ = ["StageError"] + sorted(_BY_ENAME)


def _from_core(code, ename, where, offset, text, message, lineno, line):
    """The exception for a stage's st_error (called by pipekernel._core)."""
    if ename == "KeyboardInterrupt":
        e = builtins.KeyboardInterrupt(message)
    else:
        cls = _BY_ENAME.get(ename, StageError)
        e = cls(message, code=code, where=where, offset=offset, text=text,
                lineno=lineno or None, line=line)
    if lineno and line is not None and hasattr(e, "add_note"):
        e.add_note(f"in line {lineno}: %{line}")
    return e
