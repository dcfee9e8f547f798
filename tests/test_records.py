"""A command's JSON result reaches its output in one write: `print` makes two (the text, then the newline), and a
Ray job's entrypoint, unbuffered, had Ray's relayed worker logs land between them on its `{"final"...}` line."""

import io

from twostream.launch.records import print_record


class _Writes(io.StringIO):
    """A stream that keeps each write call apart."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def write(self, text):
        self.calls.append(text)
        return super().write(text)


def test_a_record_is_one_write_of_one_whole_line():
    stream = _Writes()
    print_record({"final": {"loss": 0.5}}, file=stream)
    assert stream.calls == ['{"final": {"loss": 0.5}}\n']
