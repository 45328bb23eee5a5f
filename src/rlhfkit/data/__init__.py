"""Data: record formats and loaders, tokenizer training, and chat rendering with loss masks."""
