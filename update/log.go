package update

import (
	"context"
	"log/slog"
)

// quiet returns a logger for the relay client an update check runs: its
// information messages (joining the DHT, seeding) are plumbing to a
// program that embeds update, so they go down to debug; its warnings and
// errors stay as they are.
func quiet(l *slog.Logger) *slog.Logger {
	if l == nil {
		return nil
	}
	return slog.New(lowered{l.Handler()})
}

type lowered struct{ h slog.Handler }

func (q lowered) Enabled(ctx context.Context, level slog.Level) bool {
	return q.h.Enabled(ctx, lower(level))
}

func (q lowered) Handle(ctx context.Context, r slog.Record) error {
	r.Level = lower(r.Level)
	return q.h.Handle(ctx, r)
}

func (q lowered) WithAttrs(attrs []slog.Attr) slog.Handler { return lowered{q.h.WithAttrs(attrs)} }
func (q lowered) WithGroup(name string) slog.Handler       { return lowered{q.h.WithGroup(name)} }

func lower(l slog.Level) slog.Level {
	if l >= slog.LevelInfo && l < slog.LevelWarn {
		return slog.LevelDebug
	}
	return l
}
