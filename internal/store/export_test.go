package store

// SetSplitStop makes SplitPartition stop after a phase ("copied",
// "dropped"; "" runs it whole), as a splitter killed there would.
func SetSplitStop(phase string) { splitStop = phase }
