"""The store's SQLite schema: one named migration (sqlite-utils) per change, applied in order.

A database records the migrations it has had; `Store` applies the missing ones
when it opens a file and refuses a file that has one this agentkit does not
know. Add a change as a new migration at the end; never edit one that shipped.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

__all__ = ["MIGRATIONS"]

MIGRATIONS = Migrations("agentkit")
"""The store's schema, one named migration per step; `docs/store.md` is generated from it."""


@MIGRATIONS(name="0001_runs_steps_messages")
def _initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,             -- a ULID
            agent TEXT NOT NULL,             -- the agent's import path, module:Class
            status TEXT NOT NULL,            -- running | done | failed | cancelled | budget_exhausted
            created REAL NOT NULL,           -- unix seconds
            updated REAL NOT NULL,
            max_steps INTEGER NOT NULL,
            tools TEXT NOT NULL,             -- JSON: the offered tools (name, description, parameters)
            output_schema TEXT,              -- JSON Schema of a typed answer
            output TEXT,                     -- the final answer, JSON
            error TEXT                       -- why the run failed
        )"""
    )
    db.execute(
        """CREATE TABLE steps (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            idx INTEGER NOT NULL,            -- the step's index in the run
            runtime TEXT,                    -- the runtime URI (or name)
            model TEXT,
            dialect TEXT,
            grammar_hash TEXT,               -- the constraint's digest, if any
            sampling TEXT,                   -- JSON: temperature, max_tokens, seed, stop
            seed INTEGER,
            raw_text TEXT,                   -- the model's text before parsing
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cached_tokens INTEGER,
            timings TEXT,                    -- JSON, seconds
            metadata TEXT,                   -- JSON
            created REAL NOT NULL,
            UNIQUE (run_id, idx)
        )"""
    )
    db.execute(
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            position INTEGER NOT NULL,       -- its place in the conversation
            step_id TEXT REFERENCES steps(id),
            role TEXT NOT NULL,              -- system | user | assistant | tool
            text TEXT NOT NULL,              -- what full-text search reads
            body TEXT NOT NULL,              -- the whole message, JSON
            created REAL NOT NULL,
            UNIQUE (run_id, position)
        )"""
    )
    db.execute(
        """CREATE TABLE tool_calls (
            run_id TEXT NOT NULL REFERENCES runs(id),
            id TEXT NOT NULL,                -- the call's id, unique in its run
            step_id TEXT NOT NULL REFERENCES steps(id),
            position INTEGER NOT NULL,       -- where its result goes in the conversation
            name TEXT NOT NULL,
            arguments TEXT NOT NULL,         -- JSON
            idempotent INTEGER NOT NULL,
            started REAL,                    -- set before a non-idempotent tool runs
            PRIMARY KEY (run_id, id)
        )"""
    )
    db.execute(
        """CREATE TABLE tool_results (
            run_id TEXT NOT NULL,
            call_id TEXT NOT NULL,
            name TEXT NOT NULL,
            content TEXT NOT NULL,           -- JSON
            is_error INTEGER NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (run_id, call_id),
            FOREIGN KEY (run_id, call_id) REFERENCES tool_calls(run_id, id)
        )"""
    )
    db.execute("CREATE INDEX runs_by_status ON runs(status, id)")


@MIGRATIONS(name="0002_message_search")
def _search(db: sqlite_utils.Database) -> None:
    db.table("messages").enable_fts(["text"], create_triggers=True)


@MIGRATIONS(name="0003_trace_names")
def _trace_names(db: sqlite_utils.Database) -> None:
    # What a trace of the run shows: the agent's name (its class name unless
    # it was given one), who served each step's model, when each tool began.
    db.table("runs").add_column("name", str)
    db.table("steps").add_column("provider", str)
    db.table("steps").add_column("server", str)
    db.table("tool_results").add_column("started", float)


@MIGRATIONS(name="0004_workflows")
def _workflows(db: sqlite_utils.Database) -> None:
    # A workflow run is the parent of its agent steps' runs; its other steps
    # (tools, branches, loops) keep their outputs here.
    db.execute(
        """CREATE TABLE workflow_runs (
            id TEXT PRIMARY KEY,             -- a ULID
            name TEXT NOT NULL,              -- the workflow's name
            file TEXT,                       -- the workflow file, as given
            status TEXT NOT NULL,            -- running | done | failed | cancelled
            inputs TEXT NOT NULL,            -- JSON
            output TEXT,                     -- JSON
            error TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE workflow_steps (
            workflow_run TEXT NOT NULL REFERENCES workflow_runs(id),
            step TEXT NOT NULL,              -- its place: research, forecasts[2].forecast
            kind TEXT NOT NULL,              -- agent | tool | when | foreach | parallel | max_iterations
            status TEXT NOT NULL,            -- running | done | skipped | failed | cancelled
            output TEXT,                     -- JSON
            error TEXT,
            started REAL NOT NULL,
            finished REAL,
            PRIMARY KEY (workflow_run, step)
        )"""
    )
    db.execute("ALTER TABLE runs ADD COLUMN workflow_run TEXT REFERENCES workflow_runs(id)")
    db.execute("ALTER TABLE runs ADD COLUMN workflow_step TEXT")
    db.execute("CREATE INDEX runs_by_workflow ON runs(workflow_run)")


@MIGRATIONS(name="0005_parents_budgets_approvals")
def _parents_budgets_approvals(db: sqlite_utils.Database) -> None:
    # A run's parent is one link whatever its kind (a workflow step, later a
    # batch item or a plan); the workflow columns of 0004 are copied into it
    # and no longer written.
    db.execute("ALTER TABLE runs ADD COLUMN parent_kind TEXT")  # workflow | ...
    db.execute("ALTER TABLE runs ADD COLUMN parent_id TEXT")  # the parent run's id
    db.execute("ALTER TABLE runs ADD COLUMN parent_part TEXT")  # the run's place in it: a workflow step
    db.execute(
        "UPDATE runs SET parent_kind = 'workflow', parent_id = workflow_run, parent_part = workflow_step "
        "WHERE workflow_run IS NOT NULL"
    )
    db.execute("CREATE INDEX runs_by_parent ON runs(parent_id, parent_part)")
    db.execute("ALTER TABLE runs ADD COLUMN budget TEXT")  # JSON: the run's Budget
    db.execute("ALTER TABLE runs ADD COLUMN exhausted TEXT")  # which budget ran out: steps | tokens | ...
    db.execute(
        """CREATE TABLE approvals (
            run_id TEXT NOT NULL REFERENCES runs(id),
            call_id TEXT NOT NULL,
            approved INTEGER,                -- 1: run it; 0: the model reads `reason` instead; NULL: waiting
            reason TEXT,
            decided_by TEXT,                 -- who decided: a user name, `callback`, ...
            created REAL NOT NULL,           -- when (unix seconds)
            PRIMARY KEY (run_id, call_id)
        )"""
    )


@MIGRATIONS(name="0006_plan_dependencies")
def _plan_dependencies(db: sqlite_utils.Database) -> None:
    # A plan's calls run as a graph (`agentkit.planning`): each call keeps the
    # ids of the earlier calls of its turn whose results it uses. SQLite keeps
    # a /* */ comment in the table's schema; a -- one would comment out the
    # rest of the definition.
    db.execute(
        "ALTER TABLE tool_calls ADD COLUMN depends_on TEXT "
        "/* JSON: ids of the plan's calls it uses; NULL outside plans */"
    )


@MIGRATIONS(name="0007_batches")
def _batches(db: sqlite_utils.Database) -> None:
    # `agentkit batch`: one row per batch. Its items' runs are its children
    # (parent_kind 'batch', parent_part the item's id); a workflow's run gets
    # the same link, so a resumed batch finds every item it already ran.
    db.execute(
        """CREATE TABLE batches (
            id TEXT PRIMARY KEY,             -- a ULID
            target TEXT NOT NULL,            -- module:Class, or the workflow file
            input TEXT,                      -- the input file, absolute (NULL: given in Python)
            output TEXT,                     -- the output file, absolute (NULL: returned in Python)
            items INTEGER NOT NULL,          -- how many items the input has
            options TEXT NOT NULL,           -- JSON: runtime, concurrency, ...
            status TEXT NOT NULL,            -- running | done | stopped
            created REAL NOT NULL,           -- unix seconds
            updated REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX batches_by_output ON batches(output, id)")
    db.execute("ALTER TABLE workflow_runs ADD COLUMN parent_kind TEXT")  # batch | ...
    db.execute("ALTER TABLE workflow_runs ADD COLUMN parent_id TEXT")
    db.execute("ALTER TABLE workflow_runs ADD COLUMN parent_part TEXT")
    db.execute("CREATE INDEX workflow_runs_by_parent ON workflow_runs(parent_id, parent_part)")
