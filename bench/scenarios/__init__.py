"""One module per scenario of issue 8; each exposes `async def run(ctx) -> dict`."""
