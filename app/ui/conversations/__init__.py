"""The sidebar: conversations, search and their actions."""
