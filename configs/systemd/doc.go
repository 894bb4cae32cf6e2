// Package systemd holds Ferry's systemd units (the .service files in this
// folder), embedded so that `ferry-agent service install` writes exactly the
// unit that is reviewed and verified here.
package systemd
