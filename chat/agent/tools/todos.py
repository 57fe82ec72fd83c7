"""The write_todos tool (gemini-cli tools/write-todos.ts): the session's todo list, replaced as a
whole, stored on the session and streamed to its clients as a `todos` event."""

from __future__ import annotations

import uuid

from .base import Tool, ToolContext, ToolKind, ToolResult

TODO_STATUSES = ("pending", "in_progress", "completed", "cancelled", "blocked")


async def session_todos_store(*, session_id: str, todos: list[dict]) -> bool:
    """Replace the session's list; False when there is no such session."""
    from sessions_app.models import Session

    try:
        key = uuid.UUID(str(session_id))
    except ValueError:
        return False
    return bool(await Session.objects.filter(pk=key).aupdate(todos=todos))


class WriteTodosTool(Tool):
    name = "write_todos"
    display_name = "WriteTodos"
    aliases = ("writeTodos",)
    kind = ToolKind.OTHER

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        todos = args.get("todos")
        if not isinstance(todos, list):
            return "`todos` parameter must be an array"
        for todo in todos:
            if not isinstance(todo, dict):
                return "Each todo item must be an object"
            description = todo.get("description")
            if not isinstance(description, str) or not description.strip():
                return "Each todo must have a non-empty description string"
            if todo.get("status") not in TODO_STATUSES:
                return f"Each todo must have a valid status ({', '.join(TODO_STATUSES)})"
        if sum(1 for todo in todos if todo["status"] == "in_progress") > 1:
            return 'Invalid parameters: Only one task can be "in_progress" at a time.'
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        count = len(args.get("todos") or [])
        return "Cleared todo list" if count == 0 else f"Set {count} todo(s)"

    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        todos = [
            {"description": todo["description"], "status": todo["status"]} for todo in args["todos"]
        ]
        if not await session_todos_store(session_id=ctx.session_id, todos=todos):
            return ToolResult(output="", error="The session's todo list could not be stored.")
        if todos:
            listing = "\n".join(
                f"{index}. [{todo['status']}] {todo['description']}"
                for index, todo in enumerate(todos, start=1)
            )
            output = f"Successfully updated the todo list. The current list is now:\n{listing}"
        else:
            output = "Successfully cleared the todo list."
        return ToolResult(output=output, display=self.describe(args, ctx), data={"todos": todos})
