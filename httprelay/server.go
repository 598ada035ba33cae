package httprelay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// Defaults of ServerConfig's zero values.
const (
	// DefaultMaxEntries bounds the cache: about 13 MB at most.
	DefaultMaxEntries = 10000
	// DefaultMinTTL and DefaultMaxTTL bound how long a cached packet is
	// answered without asking the DHT again: its records' lowest TTL
	// (relay writes 300 s, as pkarr does), within these.
	DefaultMinTTL = 30 * time.Second
	DefaultMaxTTL = time.Hour
	// DefaultAbsentTTL is how long "the DHT has no packet" is answered
	// without asking again.
	DefaultAbsentTTL = 30 * time.Second
	// DefaultRate and DefaultBurst limit each client address: requests a
	// second, and at once.
	DefaultRate  = 20
	DefaultBurst = 60
	// DefaultMaxLookups bounds the DHT lookups and stores in flight.
	DefaultMaxLookups = 32
	// DefaultMaxConns bounds the open connections.
	DefaultMaxConns = 1024
)

// ServerConfig configures a Server. DHT is required; every other zero
// value is a documented default.
type ServerConfig struct {
	// DHT is the node the server reads packets from and stores them
	// through. Required.
	DHT *dht.Node
	// MaxEntries is the most keys the cache holds (DefaultMaxEntries);
	// the least recently asked leave first.
	MaxEntries int
	// MinTTL, MaxTTL and AbsentTTL: see DefaultMinTTL, DefaultMaxTTL,
	// DefaultAbsentTTL. A GET of a cached packet past its TTL is answered
	// from the cache at once while the DHT is asked again behind it.
	MinTTL, MaxTTL, AbsentTTL time.Duration
	// Rate and Burst limit the requests of each client address (an IPv4
	// address, an IPv6 /64); zero means DefaultRate and DefaultBurst,
	// rate.Inf no limit. Behind a reverse proxy every request comes
	// from the proxy's address.
	Rate  rate.Limit
	Burst int
	// MaxLookups bounds the DHT lookups and stores in flight; a request
	// beyond it is answered 503 (DefaultMaxLookups).
	MaxLookups int
	// MaxConns bounds the open connections (DefaultMaxConns).
	MaxConns int
	// Logger receives logs; nil is silent.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server answers pkarr's relay API from a DHT node. It is an
// http.Handler; Serve runs it on a listener with the limits a server on
// the open Internet needs.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	now     func() time.Time
	cache   *cache
	clients *clients
	lookups chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	flightMu sync.Mutex
	flight   map[signer.PublicKey]*flight
}

// flight is one DHT lookup that requests for the same key wait on.
type flight struct {
	done chan struct{}
	err  error
}

// NewServer returns a server of cfg.DHT's packets. Close stops what it
// runs in the background.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.DHT == nil {
		return nil, errors.New("httprelay: no DHT node")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MinTTL, DefaultMinTTL)
	def(&cfg.MaxTTL, DefaultMaxTTL)
	def(&cfg.AbsentTTL, DefaultAbsentTTL)
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.MaxLookups <= 0 {
		cfg.MaxLookups = DefaultMaxLookups
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     cfg.Now,
		cache:   newCache(cfg.MaxEntries, cfg.MinTTL, cfg.MaxTTL, cfg.AbsentTTL),
		clients: newClients(cfg.Rate, cfg.Burst, 8192),
		lookups: make(chan struct{}, cfg.MaxLookups),
		flight:  make(map[signer.PublicKey]*flight),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops the server's background lookups and waits for them.
func (s *Server) Close() error {
	s.flightMu.Lock()
	s.cancel()
	s.flightMu.Unlock()
	s.wg.Wait()
	return nil
}

// Serve answers the API on ln until ctx ends (then it returns nil) or
// ln fails. Slow clients are cut off: 5 s to send the headers, 15 s the
// whole request; at most MaxConns connections are open at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      45 * time.Second, // a PUT waits for the DHT
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	defer stop()
	err := hs.Serve(limitListener(ln, s.cfg.MaxConns))
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Cached returns the number of keys in the cache.
func (s *Server) Cached() int { return s.cache.len() }

// ServeHTTP answers one request: GET, HEAD, PUT or OPTIONS of
// /<z32 key>.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, If-Modified-Since")
	h.Set("Access-Control-Expose-Headers", "Cache-Control, Last-Modified, Retry-After")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if ok, wait := s.clients.allow(clientOf(r.RemoteAddr), s.now()); !ok {
		h.Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		http.Error(w, "too many requests from this address", http.StatusTooManyRequests)
		return
	}
	key, err := signer.ParsePublicKey(strings.TrimPrefix(r.URL.Path, "/"))
	if err != nil {
		if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			io.WriteString(w, "relay: a pkarr HTTP relay. GET or PUT /<z-base-32 public key>\n")
			return
		}
		http.Error(w, "invalid key: want /<52 z-base-32 characters>", http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.get(w, r, key)
	case http.MethodPut:
		s.put(w, r, key)
	default:
		h.Set("Allow", "GET, HEAD, PUT, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// get answers key's packet from the cache, refreshing it from the DHT
// behind the answer when it is past its TTL, or from a DHT lookup when
// the cache has nothing.
func (s *Server) get(w http.ResponseWriter, r *http.Request, key signer.PublicKey) {
	now := s.now()
	e, ok := s.cache.get(key)
	if !ok || e.packet == nil && now.Sub(e.fresh) >= e.ttl {
		if err := s.lookup(r.Context(), key); err != nil && !errors.Is(err, dht.ErrNotFound) {
			s.unavailable(w, err)
			return
		}
		e, _ = s.cache.get(key)
	} else if now.Sub(e.fresh) >= e.ttl {
		s.refresh(key)
	}
	if e.packet == nil {
		w.Header().Set("Cache-Control", "no-cache")
		http.Error(w, "no packet for this key", http.StatusNotFound)
		return
	}
	h := w.Header()
	age := max(0, now.Sub(e.fresh))
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(max(0, e.ttl-age)/time.Second)))
	h.Set("Last-Modified", e.packet.Time().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(len(e.body)))
	if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !e.packet.Time().Truncate(time.Second).After(t) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(e.body)
}

// unavailable answers a request the DHT could not serve.
func (s *Server) unavailable(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	if errors.Is(err, errBusy) {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	s.log.Debug("relay request failed", "err", err)
	http.Error(w, "the relay's DHT node could not answer: "+err.Error(), code)
}

// errBusy: every lookup slot is taken.
var errBusy = errors.New("too many DHT lookups in flight")

// lookup reads key's packet from the DHT into the cache, once for every
// request that asks at the same time. It returns dht.ErrNotFound when the
// DHT has none.
func (s *Server) lookup(ctx context.Context, key signer.PublicKey) error {
	f, err := s.start(key)
	if err != nil {
		return err
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start returns the DHT lookup of key in flight, starting one if there
// is none and a slot is free (else errBusy).
func (s *Server) start(key signer.PublicKey) (*flight, error) {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	f := s.flight[key]
	if f == nil {
		if s.ctx.Err() != nil {
			return nil, errors.New("the relay is closed")
		}
		select {
		case s.lookups <- struct{}{}:
		default:
			return nil, errBusy
		}
		f = &flight{done: make(chan struct{})}
		s.flight[key] = f
		s.wg.Go(func() {
			defer func() { <-s.lookups }()
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			defer cancel()
			p, _, err := s.cfg.DHT.Resolve(ctx, key)
			switch {
			case err == nil:
				s.cache.put(key, p, s.now())
			case errors.Is(err, dht.ErrNotFound):
				s.cache.put(key, nil, s.now())
			}
			s.flightMu.Lock()
			delete(s.flight, key)
			s.flightMu.Unlock()
			f.err = err
			close(f.done)
		})
	}
	return f, nil
}

// refresh reads key's packet from the DHT again, in the background,
// unless a lookup of it is in flight already or every slot is taken (the
// next request tries again).
func (s *Server) refresh(key signer.PublicKey) {
	if _, err := s.start(key); err != nil {
		s.log.Debug("no refresh now", "key", key, "err", err)
	}
}

// put verifies a packet a client stores, keeps it if it is not older
// than the one the relay knows, and stores it through to the DHT.
func (s *Server) put(w http.ResponseWriter, r *http.Request, key signer.PublicKey) {
	if r.ContentLength > MaxBody {
		http.Error(w, fmt.Sprintf("a relay body is at most %d bytes", MaxBody), http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, fmt.Sprintf("a relay body is at most %d bytes", MaxBody), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "could not read the body", http.StatusBadRequest)
		return
	}
	p, err := record.ParseBody(key, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if e, ok := s.cache.get(key); ok && e.packet != nil && older(p, e.packet) {
		http.Error(w, fmt.Sprintf("older than the packet this relay holds (seq %d)", e.packet.Seq), http.StatusConflict)
		return
	}
	select {
	case s.lookups <- struct{}{}:
	default:
		s.unavailable(w, errBusy)
		return
	}
	defer func() { <-s.lookups }()
	s.cache.put(key, p, s.now())
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	_, err = s.cfg.DHT.Store(ctx, p)
	switch {
	case errors.Is(err, dht.ErrOutdated):
		s.cache.stale(key)
		http.Error(w, "a DHT node holds a newer packet for this key", http.StatusConflict)
	case err != nil:
		s.unavailable(w, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// older reports whether p loses to have: a lower seq, or the same seq
// with another signature.
func older(p, have *record.SignedPacket) bool {
	return p.Seq < have.Seq || p.Seq == have.Seq && p.Sig != have.Sig
}

// limitListener accepts at most n connections open at once.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, slots: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	slots chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &slotConn{Conn: c, free: func() { <-l.slots }}, nil
}

type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}
