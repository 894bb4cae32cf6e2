// Package access is the agent's allow-list: it parses the rules of the
// [access] allow setting and decides, before and after resolving, whether the
// gateway may reach a target through this agent. Everything not admitted by a
// rule is denied; an empty list denies everything.
//
// # Rules
//
// A rule is HOST:PORT. HOST is one of:
//
//   - a DNS name, matched case-insensitively and without a trailing dot:
//     db.internal:5432
//   - a wildcard *.SUFFIX, which matches one or more labels in front of SUFFIX
//     but never SUFFIX itself: *.corp.example:443 admits a.corp.example and
//     a.b.corp.example, not corp.example
//   - an IP address: 10.0.0.5:22, [::1]:80 (IPv6 always in brackets)
//   - a CIDR prefix: 10.20.0.0/16:5432-5439, [2001:db8::/32]:443
//
// PORT is a port 1-65535 or an inclusive range a-b. A bare * host is rejected:
// write 0.0.0.0/0 (every IPv4 address) or [::/0] if that is really meant.
// IPv4 rules never match IPv6 addresses and the other way round.
//
// # Targets
//
// [Policy.Check] decides on the target string the gateway sent. A name is
// admitted by a name rule without looking at DNS: the operator trusts their
// resolver for names they listed. A name that no name rule admits may still
// be reached through an IP or CIDR rule for its port: the decision then says
// NeedAddrCheck, and the dialler must check every resolved address with
// [Policy.AllowAddr] before connecting to it.
//
// Targets are normalised before matching so that no other spelling of a host
// slips past a rule: names are lower-cased and lose a trailing dot,
// IPv4-mapped IPv6 addresses are unmapped, and numeric hosts that are not a
// canonical IPv4 address (2130706433, 0177.0.0.1, 0x7f.1, 127.1) are rejected
// as ambiguous instead of being handed to a resolver that might read them as
// an address.
package access
