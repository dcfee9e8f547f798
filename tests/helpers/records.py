"""The `{"final": ...}` record a training command prints, found in a job's output and checked to be whole."""

import json


def final_record(output: str) -> dict:
    """The first `{"final": ...}` record in OUTPUT. A launcher may put its own prefix before it (horovodrun's
    `[0]<stdout>:`, Ray's relayed logs), but nothing may follow it on its line: text after the record means
    another writer split it, which is what `twostream.launch.records.print_record` prevents."""
    line = next(line for line in output.splitlines() if '{"final"' in line)
    start = line.index('{"final"')
    record, end = json.JSONDecoder().raw_decode(line, start)
    assert not line[end:].strip(), f"the final record's line goes on after it: {line[end:][:300]!r}"
    return record
