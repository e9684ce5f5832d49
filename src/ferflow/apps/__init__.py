"""The `fer` command and `fer serve`'s web page and API."""
