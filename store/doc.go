// Package store keeps the gateway's persistent state: agents and the SHA-256
// hashes of their tokens, connections created through the admin API, and the
// audit log.
//
// Two backends implement the same [Store] contract: SQLite (modernc.org/sqlite,
// pure Go, the embedded default for a single gateway node) and PostgreSQL
// (github.com/jackc/pgx/v5, for several gateway nodes sharing one database).
// [Open] applies the numbered schema migrations before it returns, inside a
// transaction and recorded in the schema_migrations table, so a new binary
// upgrades an old database in place.
//
// The store never sees a token, only its hash: the caller hashes.
package store
