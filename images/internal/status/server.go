package status

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// Serve answers HTTP requests for the status page on l until ctx ends
// (then it closes l), one connection at a time: a request line "GET
// /[?format=json] HTTP/1.x" and its headers, a response with
// Connection: close. It is what a node serves on its own TCP/IP stack:
// net/http (with crypto/tls and HTTP/2, which it always links) would add
// about 3 MB to a board's image for one page. Each connection is bounded
// by timeout; mgmt is read once per request.
func Serve(ctx context.Context, l net.Listener, mgmt Mgmt, timeout time.Duration) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("status: accept: %w", err)
		}
		serveConn(ctx, c, mgmt, timeout)
	}
}

// maxRequest bounds a request's line and headers.
const maxRequest = 8 << 10

func serveConn(ctx context.Context, c net.Conn, mgmt Mgmt, timeout time.Duration) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	code, format, err := readRequest(bufio.NewReaderSize(io.LimitReader(c, maxRequest), 1024))
	if err != nil {
		respond(c, code, "text/plain; charset=utf-8", []byte(err.Error()+"\n"))
		// What the client still sends would reset the connection at
		// Close and could cost it the answer: read it away, briefly.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
		return
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var b strings.Builder
	if err := Render(&b, format, Read(rctx, mgmt)); err != nil {
		respond(c, 400, "text/plain; charset=utf-8", []byte(err.Error()+"\n"))
		return
	}
	respond(c, 200, ContentType(format), []byte(b.String()))
}

// readRequest reads a request line and its headers; it returns the
// format asked for, or the status code and the error to answer.
func readRequest(r *bufio.Reader) (int, string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 400, "", errors.New("status: no request line")
	}
	// request-line = method SP request-target SP HTTP-version (RFC 9112,
	// 3): single spaces, nothing else between the parts; a bare LF ends
	// it as well as CRLF.
	parts := strings.Split(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || (parts[2] != "HTTP/1.0" && parts[2] != "HTTP/1.1") {
		return 400, "", errors.New("status: malformed request line")
	}
	for { // headers, ignored, up to the empty line
		h, err := r.ReadString('\n')
		if err != nil {
			return 400, "", errors.New("status: request headers too long or cut")
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	if parts[0] != "GET" {
		return 405, "", errors.New("status: only GET")
	}
	u, err := url.ParseRequestURI(parts[1])
	if err != nil || u.Path != "/" {
		return 404, "", errors.New("status: the page is at /")
	}
	return 200, u.Query().Get("format"), nil
}

var reasons = map[int]string{200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}

func respond(w io.Writer, code int, ctype string, body []byte) {
	fmt.Fprintf(w, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", code, reasons[code], ctype, len(body))
	w.Write(body)
}
