// Package plugins is the glue both ends of a Corral handler plugin share:
// the go-plugin handshake, the plugin set that carries the Handler gRPC
// service (see pluginpb/handler.proto), and the raised gRPC message limits,
// which the host passes to the plugin in MaxMessageEnv so both ends agree.
// docs/plugins.md describes the protocol for plugins in other languages.
//
// Plugin authors import plugins/sdk; the worker runs plugins through
// plugins/host. Neither end should need anything here beyond what those two
// packages already use, but a plugin written against go-plugin directly can
// reuse Handshake and PluginSet to be sure it matches the host.
package plugins
