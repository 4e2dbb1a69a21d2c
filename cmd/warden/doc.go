// Command warden is the per-pod security sidecar. main only parses the
// subcommand, builds the configuration and wires the parts; agent runs them.
//
// main calls run and exits on its error; nothing else exits. No part's
// logic lives here beyond the demo app's echo handler: a behaviour worth
// testing on its own belongs to the package that owns it. Nothing imports
// this package.
package main
