package peerwire

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Web seeds (BEP 19, "GetRight style") serve a torrent's files over HTTP:
// <url><name> for a single file, <url><name>/<path...> for several. A
// download asks one for whole pieces, one HTTP range request per file a
// piece spans, into a buffer of its own, and checks the piece's SHA-1
// before any of its bytes go into the piece in flight: a web seed never
// puts an unverified byte into a piece, and blocks peers sent for the
// same piece are replaced by verified ones.

const (
	maxWebFailures = 3 // failures in a row (no answer, 5xx) that drop a web seed
	maxRedirects   = 3
	maxWebSeeds    = 4                      // web seeds a download uses, each with a piece buffer per request
	webIdle        = 200 * time.Millisecond // a web seed with nothing to fetch looks again after that
)

// errHostileWebSeed marks an answer that shows the web seed cannot be
// trusted with the download: it is dropped at once.
var errHostileWebSeed = errors.New("web seed sent a wrong answer")

// webSeed is one web seed of a download. Its fields are under t.mu.
type webSeed struct {
	base     string // ends in '/'
	reqs     map[blockKey]struct{}
	busy     map[int]bool // pieces being fetched
	failures int
	dropped  bool
}

// webFile is one file of the torrent, as a web seed serves it.
type webFile struct {
	path        string // escaped, relative to the web seed's URL
	off, length int64
}

// webFiles returns the torrent's files as a web seed serves them.
func (t *Torrent) webFiles() []webFile {
	if len(t.info.Files) == 0 {
		return []webFile{{webPath([]string{t.info.Name}), 0, t.length}}
	}
	var out []webFile
	var off int64
	for _, f := range t.info.Files {
		out = append(out, webFile{webPath(append([]string{t.info.Name}, f.Path...)), off, f.Length})
		off += f.Length
	}
	return out
}

// webPath joins a file's path components, each percent-encoded but for
// RFC 3986's unreserved characters (letters, digits, "-._~"), with
// uppercase hex digits, as aria2 asks a web seed for them. Every server
// that decodes percent escapes (net/http, Python's http.server, nginx)
// finds the same file under this path as under libtorrent's (which
// leaves "!*()" as they are and writes lowercase hex) and the torrent
// library's (url.PathEscape, with "+" escaped); escaping "+" matters
// for S3 and its likes, which read a bare "+" as a space.
func webPath(parts []string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('/')
		}
		for j := range len(p) {
			c := p[j]
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
				b.WriteByte(c)
				continue
			}
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// webClient is the HTTP client of web seed requests: redirects bounded,
// no timeout of its own (each request has a watchdog).
func (c *Client) webClient() *http.Client {
	return &http.Client{Transport: c.cfg.HTTPTransport, CheckRedirect: func(_ *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		return nil
	}}
}

// startWebSeeds starts Config.WebSeedRequests workers for each of the
// first maxWebSeeds web seeds of o, in wg, until ctx ends.
func (dl *download) startWebSeeds(ctx context.Context, wg *sync.WaitGroup) {
	t := dl.t
	seen := map[string]bool{}
	hc := t.c.webClient()
	files := t.webFiles()
	for _, u := range dl.opts.WebSeeds {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		if seen[u] {
			continue
		}
		if len(seen) == maxWebSeeds {
			break
		}
		seen[u] = true
		ws := &webSeed{base: u, reqs: map[blockKey]struct{}{}, busy: map[int]bool{}}
		for range t.c.cfg.WebSeedRequests {
			wg.Go(func() { dl.webWorker(ctx, hc, files, ws) })
		}
	}
}

// webWorker fetches pieces from ws, one at a time, until the download is
// done, ctx ends or ws is dropped.
func (dl *download) webWorker(ctx context.Context, hc *http.Client, files []webFile, ws *webSeed) {
	t := dl.t
	buf := make([]byte, t.pieceLen)
	for {
		t.mu.Lock()
		if ws.dropped {
			t.mu.Unlock()
			return
		}
		pc := dl.nextWeb(ws)
		var rctx context.Context
		var cancel context.CancelFunc
		if pc != nil {
			rctx, cancel = context.WithCancel(ctx)
			pc.cancels = append(pc.cancels, cancel)
		}
		t.mu.Unlock()
		if pc == nil {
			select {
			case <-ctx.Done():
				return
			case <-dl.done:
				return
			case <-time.After(webIdle):
			}
			continue
		}
		b := buf[:t.pieceSize(pc.index)]
		err := dl.fetchWeb(rctx, hc, files, ws.base, pc.index, b)
		if err == nil {
			if sum := sha1.Sum(b); string(sum[:]) != string(t.pieceHash(pc.index)) {
				err = fmt.Errorf("%w: piece %d does not match its SHA-1", errHostileWebSeed, pc.index)
			}
		}
		cancelled := rctx.Err() != nil
		cancel()
		t.mu.Lock()
		delete(ws.busy, pc.index)
		dropNow := false
		if err == nil {
			ws.failures = 0
			dl.webPiece(ws, pc, b)
		} else {
			dl.releaseWeb(ws, pc)
			if !cancelled {
				dropNow = dl.webFailed(ws, err)
			}
		}
		dropped, failures := ws.dropped, ws.failures
		t.fillAll()
		t.mu.Unlock()
		if f := dl.opts.WebSeedDropped; dropNow && f != nil {
			f(ws.base, err)
		}
		if err != nil && !cancelled && !dropped {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second << min(failures-1, 4)):
			}
		}
	}
}

// webFailed counts a failure of ws, and drops it for the download after a
// hostile answer or maxWebFailures in a row: it reports whether it
// dropped ws now. t.mu is held.
func (dl *download) webFailed(ws *webSeed, err error) bool {
	ws.failures++
	if ws.dropped || (!errors.Is(err, errHostileWebSeed) && ws.failures < maxWebFailures) {
		return false
	}
	ws.dropped = true
	return true
}

// nextWeb chooses the piece ws fetches next and notes its blocks as
// queued at ws: a new piece if there is room (as next chooses one), else
// one in flight with blocks no one is asked for, or (in the endgame)
// blocks waited for longer than stealAfter. nil: none. t.mu is held.
func (dl *download) nextWeb(ws *webSeed) *piece {
	all := func(int) bool { return true }
	if n := len(dl.active); n < dl.maxActive {
		i := -1
		if h := dl.head(); dl.opts.InOrder && h >= 0 && dl.byIndex[h] == nil && n == dl.maxActive-1 {
			i = h // the place kept for the piece OnPiece waits for (next)
		} else {
			i = dl.pick(all)
		}
		if i >= 0 {
			pc := dl.startPiece(i)
			pc.next = pc.nblocks
			return dl.askWeb(ws, pc)
		}
	}
	endgame := dl.unstarted == 0
	now := time.Since(dl.start)
	for _, pc := range dl.active {
		if pc.verifying || ws.busy[pc.index] {
			continue
		}
		if len(pc.retry) > 0 || pc.next < pc.nblocks {
			return dl.askWeb(ws, pc)
		}
		for b := range pc.nblocks {
			if endgame && pc.state[b] == blockRequested && pc.asked[b] < maxAsked && now-pc.askedAt[b] >= stealAfter {
				return dl.askWeb(ws, pc)
			}
		}
	}
	return nil
}

// askWeb notes the blocks of pc no one sent yet as queued at ws. t.mu is
// held.
func (dl *download) askWeb(ws *webSeed, pc *piece) *piece {
	ws.busy[pc.index] = true
	now := time.Since(dl.start)
	for b := range pc.nblocks {
		if pc.state[b] == blockDone || pc.state[b] == blockReceiving {
			continue
		}
		if pc.state[b] == blockFree {
			pc.askedAt[b] = now
		}
		pc.state[b] = blockRequested
		pc.asked[b]++
		ws.reqs[blockKey{int32(pc.index), int32(b)}] = struct{}{}
	}
	pc.retry = pc.retry[:0]
	pc.next = pc.nblocks
	return pc
}

// releaseWeb takes back the blocks of pc queued at ws: those no one else
// is asked for are requested again. t.mu is held.
func (dl *download) releaseWeb(ws *webSeed, pc *piece) {
	live := dl.byIndex[pc.index] == pc
	for b := range pc.nblocks {
		k := blockKey{int32(pc.index), int32(b)}
		if _, ok := ws.reqs[k]; !ok {
			continue
		}
		delete(ws.reqs, k)
		if live && pc.asked[b] > 0 {
			pc.unask(b)
		}
	}
}

// webPiece puts the verified bytes of piece pc that ws sent into it:
// every block but those a peer is sending now, whose requests elsewhere
// are cancelled. With none being sent, the piece is whole and verified.
// t.mu is held.
func (dl *download) webPiece(ws *webSeed, pc *piece, data []byte) {
	dl.releaseWeb(ws, pc)
	if dl.byIndex[pc.index] != pc || pc.verifying {
		return // peers completed it first
	}
	receiving := false
	for b := range pc.nblocks {
		if pc.state[b] == blockReceiving {
			receiving = true
			continue
		}
		copy(pc.buf[b*BlockSize:], data[b*BlockSize:b*BlockSize+pc.blockLen(b)])
		if pc.state[b] != blockDone {
			pc.state[b] = blockDone
			pc.done++
		}
		dl.cancelOthers(pc, b)
	}
	pc.retry, pc.next, pc.from = pc.retry[:0], pc.nblocks, nil
	dl.t.downloaded.Add(int64(len(pc.buf)))
	if !receiving {
		pc.trusted = true
		pc.verifying = true
		dl.verify <- pc // never blocks: it holds maxActive pieces
	}
}

// fetchWeb reads piece i of the torrent from the web seed at base into
// buf: one range request per file it spans.
func (dl *download) fetchWeb(ctx context.Context, hc *http.Client, files []webFile, base string, i int, buf []byte) error {
	off := int64(i) * dl.t.pieceLen
	end := off + int64(len(buf))
	for _, f := range files {
		if f.off+f.length <= off || f.length == 0 {
			continue
		}
		if f.off >= end {
			break
		}
		a, b := max(off, f.off), min(end, f.off+f.length)
		if err := dl.getRange(ctx, hc, base+f.path, a-f.off, buf[a-off:b-off], f.length); err != nil {
			return err
		}
	}
	return nil
}

// getRange reads len(dst) bytes of the file at u from byte at into dst,
// and never more: the answer must be that range (206, or 200 with the
// whole file when the range is the whole file), and each read must bring
// bytes within Config.SnubTimeout.
func (dl *download) getRange(ctx context.Context, hc *http.Client, u string, at int64, dst []byte, size int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snub := dl.t.c.cfg.SnubTimeout
	watchdog := time.AfterFunc(snub, cancel)
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errHostileWebSeed, err)
	}
	last := at + int64(len(dst)) - 1
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", at, last))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		var a, b int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/", &a, &b); err != nil || a != at || b != last {
			return fmt.Errorf("%w: range %q for bytes %d-%d of %s", errHostileWebSeed, resp.Header.Get("Content-Range"), at, last, u)
		}
	case resp.StatusCode == http.StatusOK && at == 0 && int64(len(dst)) == size:
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%q for %s", resp.Status, u)
	default:
		return fmt.Errorf("%w: %q for bytes %d-%d of %s", errHostileWebSeed, resp.Status, at, last, u)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(dst)) {
		return fmt.Errorf("%w: %d bytes for %d of %s", errHostileWebSeed, resp.ContentLength, len(dst), u)
	}
	for n := 0; n < len(dst); {
		k, err := resp.Body.Read(dst[n:])
		n += k
		if k > 0 {
			watchdog.Reset(snub)
		}
		if err != nil && n < len(dst) {
			if ctx.Err() != nil {
				return fmt.Errorf("%d of %d bytes of %s: %w", n, len(dst), u, ctx.Err())
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: %d of %d bytes of %s: %w", errHostileWebSeed, n, len(dst), u, err)
		}
	}
	return nil
}
