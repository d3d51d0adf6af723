// Package ledger holds the donations example's business rules as pure
// types and functions: what a donation is, and how a donor's and a
// campaign's running totals change when one is applied.
//
// The plugin in examples/donations/plugin wires these into Corral
// handlers; the load generator and the verifier use the same functions to
// compute the totals a cluster must end up with, so the rules live in one
// place.
package ledger
