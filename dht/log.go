package dht

import (
	"context"
	"log/slog"

	alog "github.com/anacrolix/log"
)

// anacrolixLogger returns an anacrolix/log logger that hands every message
// to l at debug level (the library's messages are diagnostics: what relay
// must say, it says through its own errors). A nil l drops everything.
func anacrolixLogger(l *slog.Logger) alog.Logger {
	var al alog.Logger
	al.SetHandlers(slogHandler{l: l})
	return al.WithNames("anacrolix/dht")
}

type slogHandler struct {
	l *slog.Logger
}

func (h slogHandler) Handle(r alog.Record) {
	ctx := context.Background()
	if h.l == nil || !h.l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	h.l.LogAttrs(ctx, slog.LevelDebug, r.Msg.String(),
		slog.String("from", "anacrolix/dht"),
		slog.String("level", r.Level.LogString()))
}
