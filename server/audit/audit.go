// Package audit writes audit events with group commit: events of one tenant
// that arrive while an earlier write is in flight are stored together, in one
// transaction, by storage.Storage.AppendAudits. A caller still waits until its
// own event is durable, but concurrent callers share the cost of the write.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// DefaultMaxBatch caps a batch when Options.MaxBatch is zero.
const DefaultMaxBatch = 256

// DefaultMaxQueue caps a tenant's queue when Options.MaxQueue is zero.
const DefaultMaxQueue = 10000

// ErrClosed is returned by Append once Close has been called.
var ErrClosed = errors.New("audit: writer closed")

// ErrBacklog is returned by Enqueue while a tenant's queue is full: the
// store is down or slower than the events arrive, and the caller must not
// go on as if its event were recorded.
var ErrBacklog = errors.New("audit: too many events waiting to be written")

// Options tune a Writer.
type Options struct {
	// MaxBatch caps the events stored in one transaction; zero means DefaultMaxBatch.
	MaxBatch int
	// MaxQueue caps the events of a tenant waiting to be written, past which
	// Enqueue refuses; zero means DefaultMaxQueue.
	MaxQueue int
	// ObserveWrite, when set, is called after every batch is written, with
	// how long AppendAudits took, how many events the batch held and the
	// error, if any: a plain function, so this package knows nothing of
	// whoever keeps the numbers.
	ObserveWrite func(d time.Duration, events int, err error)
}

// Writer appends audit events, grouping concurrent ones of a tenant into one
// transaction. It starts no goroutine of its own until events arrive.
type Writer struct {
	store    storage.Storage
	log      *slog.Logger
	maxBatch int
	maxQueue int
	observe  func(time.Duration, int, error)

	mu     sync.Mutex
	closed bool
	// pending holds each tenant's events not yet taken into a batch. A tenant
	// has an entry, possibly empty, exactly while its goroutine runs.
	pending map[string][]*request
	running sync.WaitGroup
}

// request is one waiting Append.
type request struct {
	event storage.AuditEvent
	// done receives the outcome of the batch that held the event; it is
	// buffered so the writer never waits for a caller that gave up.
	done chan error
	// queued marks an event from Enqueue: no one waits for it, so a failed
	// write is retried rather than reported.
	queued bool
}

// NewWriter returns a writer storing events in store and logging failed
// batches to log (nil discards).
func NewWriter(store storage.Storage, log *slog.Logger, opts Options) *Writer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{store: store, log: log, maxBatch: opts.MaxBatch, maxQueue: opts.MaxQueue, observe: opts.ObserveWrite,
		pending: make(map[string][]*request)}
}

// Append stores e and returns once it is durable, or with the error that kept
// it from being stored. If ctx ends first, Append returns ctx's error but the
// event, already queued, may still be stored.
func (w *Writer) Append(ctx context.Context, e storage.AuditEvent) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: append %s event: %w", e.Type, context.Cause(ctx))
	}
	req := &request{event: e, done: make(chan error, 1)}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	queue, running := w.pending[e.TenantID]
	w.pending[e.TenantID] = append(queue, req)
	if !running {
		w.running.Add(1)
		go w.drain(e.TenantID)
	}
	w.mu.Unlock()

	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: wait for %s event: %w", e.Type, context.Cause(ctx))
	}
}

// Enqueue queues e to be written with the next batch and returns without
// waiting for it, for events too frequent to wait a commit for each (every
// request through the FHIR gateway). A queued event is retried until it is
// stored, so a store that is down loses nothing while the process runs; the
// queue is bounded, and once it is full Enqueue returns ErrBacklog and the
// caller must refuse the work the event would have recorded.
func (w *Writer) Enqueue(e storage.AuditEvent) error {
	req := &request{event: e, done: make(chan error, 1), queued: true}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	queue, running := w.pending[e.TenantID]
	if len(queue) >= w.maxQueue {
		return ErrBacklog
	}
	w.pending[e.TenantID] = append(queue, req)
	if !running {
		w.running.Add(1)
		go w.drain(e.TenantID)
	}
	return nil
}

// Pending is the number of events of every tenant waiting to be taken
// into a batch, for metrics.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, q := range w.pending {
		n += len(q)
	}
	return n
}

// Close stops accepting events, waits until every queued event has been
// written, and returns. Later calls return at once.
func (w *Writer) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.running.Wait()
}

// drain writes a tenant's pending events, a batch at a time, until none are
// left. Whatever queues up while one batch is written forms the next, so a
// lone event is written at once and batches grow only with load.
func (w *Writer) drain(tenantID string) {
	defer w.running.Done()
	failures := 0
	for {
		w.mu.Lock()
		queue := w.pending[tenantID]
		if len(queue) == 0 {
			delete(w.pending, tenantID)
			w.mu.Unlock()
			return
		}
		if len(queue) < w.maxBatch && !w.closed && allQueued(queue) {
			// No one waits on these: a moment's wait lets the next ones
			// join the same transaction, which costs far less per event.
			w.mu.Unlock()
			time.Sleep(queuedLinger)
			w.mu.Lock()
			queue = w.pending[tenantID]
		}
		n := min(len(queue), w.maxBatch)
		batch := queue[:n:n]
		w.pending[tenantID] = queue[n:]
		w.mu.Unlock()
		if w.write(tenantID, batch) == nil {
			failures = 0
			continue
		}
		failures++
		if !w.requeue(tenantID, batch, failures) {
			continue
		}
		time.Sleep(min(retryBackoff<<min(failures, 6), maxRetryBackoff))
	}
}

// queuedLinger is how long a batch of only enqueued events waits for more.
const queuedLinger = 10 * time.Millisecond

// allQueued reports whether no one waits on any of the requests.
func allQueued(rs []*request) bool {
	for _, r := range rs {
		if !r.queued {
			return false
		}
	}
	return true
}

// Backoff between retries of queued events while the store fails, and how
// many failures in a row a closing writer sits through before it gives up.
const (
	retryBackoff    = 50 * time.Millisecond
	maxRetryBackoff = 3 * time.Second
	closingRetries  = 5
)

// requeue puts the queued events of a failed batch back at the head of the
// tenant's queue, in order, so the chain keeps the order they came in. Once
// Close has been called and the store has failed closingRetries times in a
// row they are dropped instead (and were logged), so Close cannot wait
// forever on a store that stays down. It reports whether any were put back.
func (w *Writer) requeue(tenantID string, batch []*request, failures int) bool {
	var again []*request
	for _, r := range batch {
		if r.queued {
			again = append(again, r)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(again) == 0 || w.closed && failures > closingRetries {
		return false
	}
	w.pending[tenantID] = append(again, w.pending[tenantID]...)
	return true
}

// write stores one batch, hands every waiter the outcome and returns it.
func (w *Writer) write(tenantID string, batch []*request) error {
	events := make([]storage.AuditEvent, len(batch))
	for i, r := range batch {
		events[i] = r.event
	}
	// Not a caller's context: one caller giving up must not fail the others'
	// events, and Close relies on queued events being written.
	start := time.Now()
	_, err := w.store.AppendAudits(context.Background(), tenantID, events)
	if w.observe != nil {
		w.observe(time.Since(start), len(events), err)
	}
	if err != nil {
		err = fmt.Errorf("audit: append %d events of tenant %q: %w", len(batch), tenantID, err)
		// Logged here too because a waiter whose context ended hears nothing.
		w.log.Error("audit events not recorded", "tenant", tenantID, "events", len(batch), "err", err)
	}
	for _, r := range batch {
		if !r.queued {
			r.done <- err
		}
	}
	return err
}
