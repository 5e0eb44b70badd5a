"""Ready-made tools. Offer them to an agent like your own.

Example:
    ```python
    from agentkit.tools import calculate, files, http_get, now, sqlite_query

    class Helper(Agent):
        tools = [
            calculate,
            now,
            http_get(allow_hosts=["docs.python.org"]),
            sqlite_query("shop.db"),
            *files("workspace", write=True),
        ]
    ```

The tools that reach outside the process are factories: each takes what the
model may touch (hosts, a directory, a database) and caps, and refuses the
rest with a `ToolRefused` error result that says what was refused and why.
"""

from agentkit.tools._refusal import TimeCapExceeded, ToolRefused
from agentkit.tools.arithmetic import calculate
from agentkit.tools.clock import now
from agentkit.tools.files import (
    DirEntry,
    FileText,
    Listing,
    Match,
    Matches,
    files,
    list_dir,
    read_file,
    search_files,
    write_file,
)
from agentkit.tools.sqlite import QueryResult, sqlite_query
from agentkit.tools.web import Page, http_get

__all__ = [
    "DirEntry",
    "FileText",
    "Listing",
    "Match",
    "Matches",
    "Page",
    "QueryResult",
    "TimeCapExceeded",
    "ToolRefused",
    "calculate",
    "files",
    "http_get",
    "list_dir",
    "now",
    "read_file",
    "search_files",
    "sqlite_query",
    "write_file",
]
