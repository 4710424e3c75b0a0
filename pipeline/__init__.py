"""Generation pipeline: image sources, dedup, the LangGraph graph, batch runner, shard store, export."""
