// Package cache is the bounded in-memory cache that warden's request path
// shares: each policy revision's decision cache (bundle) and the cache of
// verified tokens (agent/token) are a Cache.
//
// It owns the sharding, the bounds in entries and in bytes, CLOCK (second
// chance) eviction, expiry and the comparison of keys. A key is hashed with
// a seed random per cache, so nobody outside can craft keys whose hashes
// collide, and a hit compares the whole key, so a collision costs a miss,
// never another key's value. A hit takes one shard's read lock and
// allocates nothing.
//
// It does not know what it stores: the caller copies into a value whatever
// it must own before Put, and says what the value holds in bytes. It must
// not import any other warden package, log, read the environment or start
// a goroutine: eviction runs in Put, under one shard's lock.
package cache
