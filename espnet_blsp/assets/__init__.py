"""Offline assets: real Whisper and LLM weights converted from registry packages."""
