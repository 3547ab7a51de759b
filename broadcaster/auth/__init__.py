"""Who is asking: passwords, API tokens, sessions and role checks."""
