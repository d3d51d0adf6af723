// Package client talks to a Corral cluster: it finds healthy workers in
// Consul and calls their gRPC API through per-peer circuit breakers.
// The coordinator CLI is built on it; Go programs can use it directly.
//
// Workers that serve mutual TLS need a client certificate from the
// cluster's CA; its role (read, submit or admin) decides what the client
// may call:
//
//	tlsCfg, err := client.LoadTLS("submit.pem", "submit-key.pem", "ca.pem")
//	if err != nil {
//		return err
//	}
//	c, err := client.New(client.Config{ConsulAddr: "127.0.0.1:8500", TLS: tlsCfg})
//
// Besides jobs (Submit, Call, Results, Cancel), it pages through an entity
// type's keys (ListEntities), deletes an entity's state in order with its
// key's jobs (DeleteEntity, admin role) and runs a broadcast handler on
// every member of a group (Broadcast):
//
//	resp, err := c.Broadcast(ctx, "cache", "cache.invalidate", []byte(`{"prefix":"price:"}`), "inv-42", 0)
//	for _, m := range resp.GetMembers() {
//		fmt.Println(m.Member, m.Outcome, string(m.Result), m.Error)
//	}
package client
