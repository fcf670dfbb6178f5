"""`python -m selfplay.config`: the config reference (every key, its default and meaning) as Markdown."""

from selfplay.config import reference_markdown

print(reference_markdown())
