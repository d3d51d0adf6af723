package plugins

import (
	"fmt"
	"unicode"
)

// MaxTopicBytes caps a topic's name.
const MaxTopicBytes = 200

// CheckTopic says why topic cannot name a topic, or nil: a topic is a
// non-empty name of at most MaxTopicBytes bytes with no space or control
// character, not starting with "$", e.g. "donations" or "campaign.totals".
func CheckTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("empty topic name")
	}
	if topic[0] == '$' {
		return fmt.Errorf("topic name %q starts with $, kept for the built-in topics", topic)
	}
	if len(topic) > MaxTopicBytes {
		return fmt.Errorf("topic name of %d bytes, over the limit of %d", len(topic), MaxTopicBytes)
	}
	for _, r := range topic {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("topic name %q has a space, control or invalid character", topic)
		}
	}
	return nil
}
