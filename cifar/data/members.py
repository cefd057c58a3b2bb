"""The rules every archive member must pass before it is read: a safe name, bounded sizes and count.

Nothing is ever extracted to disk; still, names are checked as if they would be, so an archive
that would escape its folder elsewhere is refused here too. Declared sizes are bounded before a
byte is decompressed, so a decompression bomb stops before it fills memory.
"""

from pathlib import PurePosixPath

from cifar.core.errors import PipelineError

MAX_MEMBER_BYTES = 256 << 20  # larger than any CIFAR batch (31 MB; CIFAR-100's train file 155 MB) by far
MAX_TOTAL_BYTES = 1 << 30  # the CIFAR-10 Python archive unpacks to 178 MB, the JPEG copy to 93 MB
MAX_MEMBERS = 500_000


def check_member_name(name, archive):
    """The member's name normalised ('./a//b' -> 'a/b'); PipelineError if it would escape the dataset's root."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise PipelineError(f"{archive}: refusing member {name!r}: absolute path")
    if ".." in posix.parts:
        raise PipelineError(f"{archive}: refusing member {name!r}: path contains '..'")
    return "/".join(part for part in posix.parts if part not in ("", "."))


class MemberBudget:
    """Counts an archive's members and adds up their declared sizes; refuses past the limits."""

    def __init__(self, archive):
        self.archive, self.count, self.total = archive, 0, 0

    def add_member(self):
        self.count += 1
        if self.count > MAX_MEMBERS:
            raise PipelineError(f"{self.archive}: more than {MAX_MEMBERS} members; refusing")

    def add_size(self, name, size):
        if size > MAX_MEMBER_BYTES:
            raise PipelineError(
                f"{self.archive}: refusing member {name!r}: declared size {size} bytes "
                f"exceeds the limit of {MAX_MEMBER_BYTES}"
            )
        self.total += size
        if self.total > MAX_TOTAL_BYTES:
            raise PipelineError(f"{self.archive}: archive unpacks to more than {MAX_TOTAL_BYTES} bytes; refusing")
