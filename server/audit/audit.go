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

	"github.com/smartauth/smartauth/storage"
)

// DefaultMaxBatch caps a batch when Options.MaxBatch is zero.
const DefaultMaxBatch = 256

// ErrClosed is returned by Append once Close has been called.
var ErrClosed = errors.New("audit: writer closed")

// Options tune a Writer.
type Options struct {
	// MaxBatch caps the events stored in one transaction; zero means DefaultMaxBatch.
	MaxBatch int
}

// Writer appends audit events, grouping concurrent ones of a tenant into one
// transaction. It starts no goroutine of its own until events arrive.
type Writer struct {
	store    storage.Storage
	log      *slog.Logger
	maxBatch int

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
}

// NewWriter returns a writer storing events in store and logging failed
// batches to log (nil discards).
func NewWriter(store storage.Storage, log *slog.Logger, opts Options) *Writer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{store: store, log: log, maxBatch: opts.MaxBatch, pending: make(map[string][]*request)}
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
	for {
		w.mu.Lock()
		queue := w.pending[tenantID]
		if len(queue) == 0 {
			delete(w.pending, tenantID)
			w.mu.Unlock()
			return
		}
		n := min(len(queue), w.maxBatch)
		batch := queue[:n:n]
		w.pending[tenantID] = queue[n:]
		w.mu.Unlock()
		w.write(tenantID, batch)
	}
}

// write stores one batch and hands every waiter the outcome.
func (w *Writer) write(tenantID string, batch []*request) {
	events := make([]storage.AuditEvent, len(batch))
	for i, r := range batch {
		events[i] = r.event
	}
	// Not a caller's context: one caller giving up must not fail the others'
	// events, and Close relies on queued events being written.
	_, err := w.store.AppendAudits(context.Background(), tenantID, events)
	if err != nil {
		err = fmt.Errorf("audit: append %d events of tenant %q: %w", len(batch), tenantID, err)
		// Logged here too because a waiter whose context ended hears nothing.
		w.log.Error("audit events not recorded", "tenant", tenantID, "events", len(batch), "err", err)
	}
	for _, r := range batch {
		r.done <- err
	}
}
