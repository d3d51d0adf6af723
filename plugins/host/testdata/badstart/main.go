// Command badstart is a plugin that cannot start: it says why on stderr,
// as a real plugin missing its configuration would, and exits 3 before the
// handshake. It writes more lines than the host keeps.
package main

import (
	"fmt"
	"os"
)

func main() {
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(os.Stderr, "reading setting %d of 12\n", i)
	}
	fmt.Fprintln(os.Stderr, `{"@level":"error","@message":"cannot reach the database","@timestamp":"2026-05-01T10:00:00.000000Z","db":"inventory"}`)
	fmt.Fprintln(os.Stderr, "config missing: INVENTORY_DB_URL")
	os.Exit(3)
}
