package postgres

import "time"

// SetFeedPing sets how long the change feed waits for a notification
// before pinging its connection, so a test need not wait the default.
func SetFeedPing(s *Store, d time.Duration) { s.feedPing = d }
