"""Writes a slice of the audit trail as JSON Lines or CSV, to hand an audit to someone."""

import csv
import json

from monitoring.selectors import event_list, event_to_dict

CSV_COLUMNS = [
    "id",
    "createdAt",
    "type",
    "action",
    "userId",
    "userEmail",
    "sessionId",
    "ip",
    "data",
]


def events_export(*, out, since=None, until=None, fmt: str = "jsonl") -> int:
    """Oldest first; streams rows so a large export does not sit in memory. Returns the count."""
    events = event_list(since=since, before=until).order_by("seq").iterator(chunk_size=2000)
    count = 0
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for event in events:
        row = event_to_dict(event)
        if writer is not None:
            writer.writerow({**row, "data": json.dumps(row["data"], sort_keys=True)})
        else:
            out.write(json.dumps(row, sort_keys=True) + "\n")
        count += 1
    return count
