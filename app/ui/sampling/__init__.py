"""The sampling panel: model summary, system prompt, samplers and presets."""
