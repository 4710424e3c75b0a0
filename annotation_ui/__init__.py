"""The review app: Gradio annotation of generated candidates over a multi-annotator SQLite store."""
