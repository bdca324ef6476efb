"""Running a model: the engine, prompts, tokens, sampling and the backend protocol."""
