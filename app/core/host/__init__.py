"""The engine host: llama.cpp in a child process, so nothing it does ends the app."""
