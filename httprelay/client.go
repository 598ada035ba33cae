package httprelay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/relay-sh/relay/internal/untrusted"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// MaxBody is the largest relay body: a 64-byte signature, an 8-byte seq
// and BEP 44's 1000-byte value, as pkarr's relays limit it. A longer body
// is refused (413 by a server; a client reads no further).
const MaxBody = 64 + 8 + 1000

// DefaultTimeout is how long a Client waits for one relay's whole answer
// when ClientConfig.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// ContentType is the media type of a relay body, as pkarr's relays write
// it.
const ContentType = "application/pkarr.org/relays#payload"

// Sentinel errors that callers branch on with errors.Is.
var (
	// ErrNotFound: relays answered, none holds a valid packet for the key.
	ErrNotFound = errors.New("no relay holds a packet for this key")
	// ErrUnreachable: no relay answered (refused, timed out, an error
	// status, garbage).
	ErrUnreachable = errors.New("no relay answered")
	// ErrOutdated: a relay refused a packet because it holds a newer one
	// for the key (HTTP 409).
	ErrOutdated = errors.New("a relay holds a newer packet for this key")
)

// ClientConfig configures a Client. Every zero value is a documented
// default except URLs, which must name at least one relay.
type ClientConfig struct {
	// URLs are the relays' base URLs (http or https): a key's packet is
	// at the base URL's path followed by "/<z32 key>".
	URLs []string
	// Timeout bounds each request to one relay, its body included; zero
	// means DefaultTimeout.
	Timeout time.Duration
	// Transport makes the requests; nil means a copy of
	// http.DefaultTransport, which honours HTTPS_PROXY and HTTP_PROXY.
	Transport http.RoundTripper
	// Logger receives logs; nil is silent.
	Logger *slog.Logger
}

// Client reads and writes signed packets through pkarr HTTP relays.
type Client struct {
	urls    []*url.URL
	http    *http.Client
	timeout time.Duration
	log     *slog.Logger

	// seen holds the last packet verified for each key, by its body:
	// the same bytes again (a watcher's every poll) verify the same, and
	// need no second ed25519 check.
	seenMu sync.Mutex
	seen   map[signer.PublicKey]*record.SignedPacket
}

// maxSeen bounds Client.seen; when it is full it starts again empty.
const maxSeen = 1024

// ParseURLs reads a comma-separated list of relay URLs, as --relays and
// RELAY_RELAYS give it; empty items are skipped.
func ParseURLs(s string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if _, err := parseURL(u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// parseURL checks one relay URL: http or https, a host, no query or
// fragment.
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("relay URL %q: %w", untrusted.String(s), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("relay URL %q: want http(s)://host[:port][/path], with no query", untrusted.String(u.Redacted()))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// NewClient returns a client of the relays cfg names.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("no relay URL")
	}
	c := &Client{timeout: cfg.Timeout, log: cfg.Logger, seen: make(map[signer.PublicKey]*record.SignedPacket)}
	for _, s := range cfg.URLs {
		u, err := parseURL(s)
		if err != nil {
			return nil, err
		}
		c.urls = append(c.urls, u)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxResponseHeaderBytes = 16 << 10
		tr = t
	}
	c.http = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		},
	}
	return c, nil
}

// URLs returns the relays' base URLs, passwords left out.
func (c *Client) URLs() []string {
	out := make([]string, len(c.urls))
	for i, u := range c.urls {
		out[i] = u.Redacted()
	}
	return out
}

// GetStats says what a Get found.
type GetStats struct {
	// Asked is the number of relays asked; Answered those that answered
	// with a packet or "not found".
	Asked, Answered int
	// Held is the number of relays that returned the packet returned;
	// Older those that returned a valid packet with a lower seq.
	Held, Older int
	// Invalid is the number of relays that answered something that is
	// not a valid packet for the key: a bad signature, another key's
	// packet, garbage, an oversized body.
	Invalid int
}

// Get asks every relay for key's packet at once and returns the valid one
// with the highest seq. A relay that answers a forged, older or
// malformed packet, or nothing, hides nothing another relay holds. It is
// ErrNotFound when relays answered and none holds a valid packet,
// ErrUnreachable when none answered.
func (c *Client) Get(ctx context.Context, key signer.PublicKey) (*record.SignedPacket, GetStats, error) {
	type answer struct {
		p   *record.SignedPacket
		err error
	}
	answers := make([]answer, len(c.urls))
	if len(c.urls) == 1 {
		p, err := c.get(ctx, c.urls[0], key)
		answers[0] = answer{p, err}
	} else {
		var wg sync.WaitGroup
		for i, u := range c.urls {
			wg.Go(func() {
				p, err := c.get(ctx, u, key)
				answers[i] = answer{p, err}
			})
		}
		wg.Wait()
	}
	st := GetStats{Asked: len(c.urls)}
	var best *record.SignedPacket
	var errs []string
	for i, a := range answers {
		switch {
		case a.p != nil:
			st.Answered++
			if best == nil || a.p.Seq > best.Seq {
				best = a.p
			}
		case errors.Is(a.err, errNoPacket):
			st.Answered++
		case errors.Is(a.err, errInvalid):
			st.Invalid++
			fallthrough
		default:
			errs = append(errs, fmt.Sprintf("%s: %v", c.urls[i].Redacted(), a.err))
			c.log.Debug("relay answer not used", "relay", c.urls[i].Redacted(), "key", key, "err", a.err)
		}
	}
	if best != nil {
		for _, a := range answers {
			if a.p != nil && a.p.Seq == best.Seq && a.p.Sig == best.Sig {
				st.Held++
			} else if a.p != nil {
				st.Older++
			}
		}
		return best, st, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	if st.Answered > 0 {
		return nil, st, fmt.Errorf("%w (%d of %d relays answered)%s", ErrNotFound, st.Answered, st.Asked, listed(errs))
	}
	return nil, st, fmt.Errorf("%w%s", ErrUnreachable, listed(errs))
}

// listed writes errs after a colon, separated by semicolons.
func listed(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return ": " + strings.Join(errs, "; ")
}

var (
	// errNoPacket: the relay answered 404.
	errNoPacket = errors.New("not found")
	// errInvalid: the relay answered something that is not key's packet.
	errInvalid = errors.New("invalid answer")
)

// keyURL returns the URL of key's packet on the relay at base.
func keyURL(base *url.URL, key signer.PublicKey) string {
	u := *base
	u.Path = base.Path + "/" + key.String()
	return u.String()
}

// get asks one relay for key's packet and verifies what it answers.
func (c *Client) get(ctx context.Context, base *url.URL, key signer.PublicKey) (*record.SignedPacket, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, keyURL(base, key), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, unwrapURLError(err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, errNoPacket
	default:
		return nil, statusError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %v", err)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: a body over %d bytes", errInvalid, MaxBody)
	}
	if p := c.seenBody(key, body); p != nil {
		return p, nil
	}
	p, err := record.ParseBody(key, body)
	if err != nil {
		// Not wrapped: a relay's forgery is not a verification failure
		// of the record, it is a relay not to listen to.
		return nil, fmt.Errorf("%w: %v", errInvalid, err)
	}
	c.seenMu.Lock()
	if len(c.seen) >= maxSeen {
		clear(c.seen)
	}
	c.seen[key] = p
	c.seenMu.Unlock()
	return copyPacket(p), nil
}

// seenBody returns a copy of the packet verified before for key if body
// is its body byte for byte, else nil.
func (c *Client) seenBody(key signer.PublicKey, body []byte) *record.SignedPacket {
	c.seenMu.Lock()
	p := c.seen[key]
	c.seenMu.Unlock()
	if p == nil || !bytes.Equal(body, p.Body()) {
		return nil
	}
	return copyPacket(p)
}

// copyPacket returns a copy of p that shares no memory with it.
func copyPacket(p *record.SignedPacket) *record.SignedPacket {
	q := *p
	q.Packet = bytes.Clone(p.Packet)
	return &q
}

// unwrapURLError drops the "Get URL:" that net/http puts before an error,
// as the caller names the relay already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if errors.Is(ue.Err, context.DeadlineExceeded) {
			return errors.New("no answer in time")
		}
		return ue.Err
	}
	return err
}

// statusError describes an answer with an unexpected status, with the
// start of its body (what a relay says why), escaped.
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	msg := strings.TrimSpace(string(b))
	if msg != "" {
		msg = ": " + untrusted.String(msg)
	}
	return fmt.Errorf("HTTP %s%s", untrusted.String(resp.Status), msg)
}

// PutStats says what a Put did.
type PutStats struct {
	// Asked is the number of relays asked, Stored those that took the
	// packet, Outdated those that hold a newer one.
	Asked, Stored, Outdated int
}

// Put stores p on every relay at once. It is an error when no relay took
// it: ErrOutdated when one holds a newer packet, ErrUnreachable when none
// answered.
func (c *Client) Put(ctx context.Context, p *record.SignedPacket) (PutStats, error) {
	body := p.Body()
	errs := make([]error, len(c.urls))
	var wg sync.WaitGroup
	for i, u := range c.urls {
		wg.Go(func() { errs[i] = c.put(ctx, u, p.Key, body) })
	}
	wg.Wait()
	st := PutStats{Asked: len(c.urls)}
	var msgs []string
	for i, err := range errs {
		switch {
		case err == nil:
			st.Stored++
			continue
		case errors.Is(err, ErrOutdated):
			st.Outdated++
		}
		msgs = append(msgs, fmt.Sprintf("%s: %v", c.urls[i].Redacted(), err))
	}
	switch {
	case st.Stored > 0:
		if len(msgs) > 0 {
			c.log.Warn("some relays did not store the packet", "key", p.Key, "stored", st.Stored, "errors", strings.Join(msgs, "; "))
		}
		return st, nil
	case ctx.Err() != nil:
		return st, ctx.Err()
	case st.Outdated > 0:
		return st, fmt.Errorf("%w%s", ErrOutdated, listed(msgs))
	}
	return st, fmt.Errorf("%w%s", ErrUnreachable, listed(msgs))
}

// put stores body on one relay.
func (c *Client) put(ctx context.Context, base *url.URL, key signer.PublicKey, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, keyURL(base, key), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := c.http.Do(req)
	if err != nil {
		return unwrapURLError(err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		return nil
	case http.StatusConflict:
		return fmt.Errorf("%w (%v)", ErrOutdated, statusError(resp))
	}
	return statusError(resp)
}
