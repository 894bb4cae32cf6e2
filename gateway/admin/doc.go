// Package admin is the gateway's admin HTTP API: agents and their tokens,
// connections, and the audit log, as JSON under /api/v1/, behind a bearer
// admin token.
//
// [NewHandler] returns an http.Handler for the paths under /api/; the gateway
// mounts it on the admin listener (never on the tunnel port). The API reads
// and writes the [store.Store] and tells the running gateway what changed
// through [Backend]. Every mutation is recorded in the audit log with the
// actor "admin". Agent tokens are shown exactly once, in the response that
// creates them, and are never logged, stored or audited: the store keeps
// only their SHA-256 ([HashToken]).
//
// Routes:
//
//	POST   /api/v1/agents                {"name","description"} → 201 agent + "token"
//	GET    /api/v1/agents                → [agent…]
//	GET    /api/v1/agents/{name}         → agent
//	POST   /api/v1/agents/{name}/token   → {"token"}; the old token stops working, tunnels close
//	DELETE /api/v1/agents/{name}         → 204; its tunnels close, its API connections stop
//	POST   /api/v1/connections           {"name","agent","target","listen"} → 201 connection
//	GET    /api/v1/connections           → [connection…] (config file ones first-class, "source":"config")
//	DELETE /api/v1/connections/{name}    → 204
//	GET    /api/v1/audit?limit=N         → [event…], newest first (default 100, at most 1000)
//
// Errors are {"error": "…"} with status 400, 401, 404, 405, 409, or 500 when
// the store fails (the cause is logged, not returned).
package admin
