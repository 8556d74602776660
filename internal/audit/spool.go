package audit

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The spool is a directory of append-only segment files named NNNNNNNNNNNNNNNN.seg,
// numbered in write order. A segment is a sequence of frames:
//
//	uint32 big-endian payload length | uint32 big-endian CRC-32C of payload | payload
//
// and each payload is one JSON spoolEntry. Segments are preallocated (zero-filled)
// when the writer can, so a segment's frames end at the first all-zero header. A crash can leave a torn frame at the end
// of the segment that was being written; reading stops at the first frame that is
// short or fails its checksum, and the writer never appends to a segment it did not
// create, so a torn frame is always a tail and was never acknowledged.
//
// Every segment begins with a head entry carrying the chain head as it was before the
// segment's first row, so the chain can be resumed from the spool alone (PostgreSQL
// may be down when the writer starts).

const (
	segmentSuffix = ".seg"
	frameHeader   = 8
	maxFrame      = 16 << 20 // a larger length is corruption, not an event
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type spoolEntry struct {
	Head *chainHead `json:"head,omitempty"`
	Row  *Row       `json:"row,omitempty"`
}

func segmentName(dir string, id int64) string {
	return filepath.Join(dir, fmt.Sprintf("%016d%s", id, segmentSuffix))
}

// listSegments returns the segment ids in dir, oldest first.
func listSegments(dir string) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		id, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// appendFrame encodes e as a frame onto b.
func appendFrame(b []byte, e *spoolEntry) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	var ok bool
	if e.Head == nil && e.Row != nil {
		b, ok = appendRowEntry(b, e.Row)
	}
	if !ok {
		var err error
		if b, err = appendJSON(b, e); err != nil {
			return b[:start], err
		}
	}
	payload := b[start+frameHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b, nil
}

func appendJSON(b []byte, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, data...), nil
}

// errTorn reports a frame that is short or fails its checksum.
var errTorn = errors.New("torn or corrupt spool frame")

// frameReader reads frames from one segment, up to a limit.
type frameReader struct {
	f     *os.File
	r     *bufio.Reader
	off   int64 // offset of the next frame
	limit int64 // read no frame that ends beyond this; -1 means end of file
	buf   []byte
	stale bool // the buffered reader is not at off (skipTo)
}

func openFrameReader(path string) (*frameReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &frameReader{f: f, r: bufio.NewReaderSize(f, 256<<10), limit: -1}, nil
}

func (fr *frameReader) Close() error { return fr.f.Close() }

// errUnwritten reports the zeros of a preallocated segment where a frame header
// would be: nothing was written there (yet).
var errUnwritten = errors.New("no frame written here")

// next returns the next entry, io.EOF at a clean end (or the limit), errTorn at a
// damaged frame. After errTorn or io.EOF the reader's offset does not move.
func (fr *frameReader) next() (*spoolEntry, error) {
	if fr.limit >= 0 && fr.off+frameHeader > fr.limit {
		return nil, io.EOF
	}
	fresh := fr.stale // the read starts from the file, not the buffer
	e, err := fr.read()
	if (err == errTorn || err == errUnwritten) && fr.limit >= 0 && !fresh {
		// A limit means the committer has made everything before it durable, so
		// zeros or a damaged frame there come from the read-ahead buffer, filled
		// while the committer was still writing (or before it wrote at all).
		// Taking them at their word would end the segment early and delete rows
		// that were never shipped: read the file again.
		fr.stale = true
		e, err = fr.read()
	}
	if err == errUnwritten {
		err = io.EOF
	}
	return e, err
}

func (fr *frameReader) read() (*spoolEntry, error) {
	if fr.stale {
		if _, err := fr.f.Seek(fr.off, io.SeekStart); err != nil {
			return nil, err
		}
		fr.r.Reset(fr.f)
		fr.stale = false
	}
	var hdr [frameHeader]byte
	n, err := io.ReadFull(fr.r, hdr[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		fr.unread(n)
		if err == io.ErrUnexpectedEOF {
			return nil, errTorn
		}
		return nil, err
	}
	size := int64(binary.BigEndian.Uint32(hdr[:4]))
	if size == 0 && binary.BigEndian.Uint32(hdr[4:]) == 0 {
		fr.unread(n)
		return nil, errUnwritten
	}
	if size > maxFrame {
		fr.unread(n)
		return nil, errTorn
	}
	if fr.limit >= 0 && fr.off+frameHeader+size > fr.limit {
		fr.unread(n)
		return nil, io.EOF
	}
	if int64(cap(fr.buf)) < size {
		fr.buf = make([]byte, size)
	}
	payload := fr.buf[:size]
	m, err := io.ReadFull(fr.r, payload)
	if err != nil {
		fr.unread(n + m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, errTorn
		}
		return nil, err
	}
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		fr.unread(n + m)
		return nil, errTorn
	}
	var e spoolEntry
	if err := json.Unmarshal(payload, &e); err != nil {
		fr.unread(n + m)
		return nil, errTorn
	}
	fr.off += frameHeader + size
	return &e, nil
}

// skipTo moves the reader to off, the end of frames taken from elsewhere (the
// writer's memory); the next read seeks there.
func (fr *frameReader) skipTo(off int64) {
	fr.off = off
	fr.stale = true
}

// unread rewinds after a partial read so the frame can be read again once complete
// (the shipper tails a segment that the committer is still appending to).
func (fr *frameReader) unread(n int) {
	if n == 0 {
		return
	}
	if _, err := fr.f.Seek(fr.off, io.SeekStart); err == nil {
		fr.r.Reset(fr.f)
	}
}

// syncDir makes a created or removed directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
