// Command chat-plugin is the publish/subscribe example's handler plugin:
// room.post (key: the room) counts a room's posts and publishes each post
// to the room's topic, "chat.ROOM", once it commits. Watch a room with
//
//	coordinator watch chat.lobby
//	coordinator submit --handler room.post --key lobby --payload '{"from":"ann","text":"hi"}'
package main

import (
	"github.com/corralhq/corral/plugins/sdk"
)

// Post is the payload of room.post. SentMs, when set, is when the poster
// sent it (Unix ms), carried to the subscribers (the latency command
// measures with it).
type Post struct {
	From   string `json:"from"`
	Text   string `json:"text"`
	SentMs int64  `json:"sent_ms,omitempty"`
}

// Room is a room's state: how many posts it has had.
type Room struct {
	Posts int `json:"posts"`
}

// Posted is what a room's subscribers get: the post and its number in the
// room, 1 for the first.
type Posted struct {
	Room string `json:"room"`
	N    int    `json:"n"`
	Post
}

func main() {
	sdk.New("chat", "0.1.0",
		sdk.Handler("room.post", sdk.Typed(post), sdk.ShapeOf[Post]()),
	).Serve()
}

func post(c *sdk.Call, p Post, r Room) (Room, error) {
	r.Posts++
	// Sent only if this job commits: a retried or fenced attempt's post
	// never reaches a subscriber, and each committed one does once.
	if err := c.Publish("chat."+c.Key(), Posted{Room: c.Key(), N: r.Posts, Post: p}); err != nil {
		return r, err
	}
	return r, nil
}
