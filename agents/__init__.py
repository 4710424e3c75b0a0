"""The four MIFG-QA agents (pairer, writer, verifier, critic), offline and LLM backends."""
