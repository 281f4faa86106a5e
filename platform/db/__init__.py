"""Database: engine and sessions, ORM tables (orm), entities (frozen dataclasses), migrations, and the stores
(every query lives in a store)."""
