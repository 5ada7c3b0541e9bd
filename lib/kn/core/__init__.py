"""kn.core: models and what is read from them: loading by name (models), one adapter per architecture family (where the
FFN neurons live), the hook primitive that always undoes itself (hooks), next-token scoring (scoring)."""
