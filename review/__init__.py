"""`imagesearch review`: a static HTML report a curator reads before opening the bot to a community.

It only reads a collection (through `search_core`) and renders what it found with Jinja2
templates: what the collection returns for everyday and sensitive probe prompts, and what the
configured moderation would do with each. Nothing here writes a collection or talks to Discord.
"""
