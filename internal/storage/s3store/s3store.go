// Package s3store keeps modgate's objects in an S3-compatible bucket (AWS S3, MinIO,
// Ceph RGW, ...), so that several replicas share one cache and one set of published
// modules.
//
// It uses minio-go: a small, S3-only client that speaks to every S3-compatible server
// (path-style and virtual-host addressing, custom CAs) without the AWS SDK's weight.
//
// Atomicity comes from S3 itself: a PUT (or a completed multipart upload) installs
// the whole object or nothing, so a reader never sees a partial object. A reader
// that seeks issues a new ranged GET; every GET of one opened object is pinned to
// the ETag it was opened at, so a concurrent replacement makes the read fail rather
// than splice two versions together; a reader that does not seek streams the
// version it opened to the end, whatever writers do meanwhile.
package s3store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
)

// Config says where the bucket is and how to reach it.
type Config struct {
	// Endpoint is host[:port] of the S3 API, without a scheme.
	Endpoint string
	Bucket   string
	// Prefix is prepended (with a slash) to every key, so one bucket can hold
	// several installations.
	Prefix string
	Region string
	// AccessKey and SecretKey are static credentials; both empty means anonymous.
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket as endpoint/bucket rather than
	// bucket.endpoint, as MinIO and most on-premises servers need.
	PathStyle bool
	// Insecure speaks plain HTTP; for loopback tests and trusted networks only.
	Insecure bool
	// CAFile, when set, is the only CA trusted for the endpoint's certificate.
	CAFile string
	// ScratchDir is a local directory for fills in progress; it is emptied on start.
	ScratchDir string
}

// Validate reports the first missing or contradictory setting.
func (c *Config) Validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("s3store: endpoint must be set")
	case strings.Contains(c.Endpoint, "://"):
		return fmt.Errorf("s3store: endpoint %q must be host[:port], without a scheme", c.Endpoint)
	case c.Bucket == "":
		return errors.New("s3store: bucket must be set")
	case (c.AccessKey == "") != (c.SecretKey == ""):
		return errors.New("s3store: set both the access key and the secret key, or neither")
	case c.Insecure && c.CAFile != "":
		return errors.New("s3store: insecure and ca_file contradict each other")
	case c.ScratchDir == "":
		return errors.New("s3store: scratch directory must be set")
	}
	return nil
}

// Store is a storage.Store over one bucket.
type Store struct {
	client  *minio.Client
	core    minio.Core
	bucket  string
	prefix  string
	scratch string
}

var _ storage.Store = (*Store)(nil)

// New connects to the bucket described by cfg. It does not check that the bucket
// exists: the readiness check does that on every probe.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := &minio.Options{
		Secure: !cfg.Insecure,
		Region: cfg.Region,
	}
	if cfg.AccessKey != "" {
		opts.Creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	} else {
		opts.BucketLookup = minio.BucketLookupAuto
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3store: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3store: ca_file %s holds no PEM certificates", cfg.CAFile)
		}
		tr, err := minio.DefaultTransport(true)
		if err != nil {
			return nil, fmt.Errorf("s3store: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts.Transport = tr
	}
	client, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	scratch, err := filepath.Abs(cfg.ScratchDir)
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	// Anything left in scratch belongs to a process that died mid-fill; it was never
	// uploaded, so it is garbage.
	if err := os.RemoveAll(scratch); err != nil {
		return nil, fmt.Errorf("s3store: clearing %s: %w", scratch, err)
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	return &Store{
		client:  client,
		core:    minio.Core{Client: client},
		bucket:  cfg.Bucket,
		prefix:  strings.Trim(cfg.Prefix, "/"),
		scratch: scratch,
	}, nil
}

// ScratchDir is local: fills are written there and uploaded by Put once complete.
func (s *Store) ScratchDir() string { return s.scratch }

func (s *Store) name(key string) (string, error) {
	if err := storage.CheckKey(key); err != nil {
		return "", err
	}
	if s.prefix == "" {
		return key, nil
	}
	return s.prefix + "/" + key, nil
}

// Open starts the GET at once, so the returned object reads the version that
// existed at Open even if a writer replaces it meanwhile (the open response keeps
// streaming the old bytes). Only a read after a Seek needs a new, ranged GET; it is
// pinned to the ETag seen at Open and fails rather than mix two versions.
func (s *Store) Open(ctx context.Context, key string) (storage.Object, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	body, info, _, err := s.core.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, mapErr(err, key)
	}
	return &object{
		ctx:    ctx,
		core:   s.core,
		bucket: s.bucket,
		name:   name,
		key:    key,
		etag:   info.ETag,
		body:   body,
		info:   storage.ObjectInfo{Size: info.Size, ModTime: info.LastModified},
	}, nil
}

// Stat reports LastModified as the modification time; S3 keeps it to the second,
// which the cache's TTLs (minutes) tolerate.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	st, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return storage.ObjectInfo{}, mapErr(err, key)
	}
	return storage.ObjectInfo{Size: st.Size, ModTime: st.LastModified}, nil
}

// Put uploads f with its size known up front. Content-MD5 makes the server reject
// an upload corrupted in transit instead of storing it.
func (s *Store) Put(ctx context.Context, key string, f *os.File) (err error) {
	defer derrors.Wrap(&err, "s3store: put %s", key)
	name, err := s.name(key)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, s.bucket, name, io.NewSectionReader(f, 0, st.Size()), st.Size(), minio.PutObjectOptions{
		ContentType:    "application/octet-stream",
		SendContentMd5: true,
	})
	return err
}

func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("s3store: delete %s: %w", key, err)
	}
	return nil
}

// CheckBucket reports whether the bucket exists and the credentials can reach it;
// the readiness check calls it.
func (s *Store) CheckBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3store: bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3store: bucket %s does not exist", s.bucket)
	}
	return nil
}

// object reads one version of a stored object, reopening it at the read position
// after a Seek.
type object struct {
	ctx    context.Context
	core   minio.Core
	bucket string
	name   string
	key    string
	etag   string
	info   storage.ObjectInfo

	body    io.ReadCloser // nil until needed after a Seek
	bodyPos int64         // the offset body reads from next
	pos     int64
}

func (o *object) Info() storage.ObjectInfo { return o.info }

func (o *object) Read(p []byte) (int, error) {
	if o.pos >= o.info.Size {
		return 0, io.EOF
	}
	if o.body != nil && o.bodyPos != o.pos {
		o.body.Close()
		o.body = nil
	}
	if o.body == nil {
		opts := minio.GetObjectOptions{}
		if err := opts.SetMatchETag(o.etag); err != nil {
			return 0, fmt.Errorf("s3store: %s: %w", o.key, err)
		}
		if err := opts.SetRange(o.pos, 0); err != nil {
			return 0, fmt.Errorf("s3store: %s: %w", o.key, err)
		}
		body, _, _, err := o.core.GetObject(o.ctx, o.bucket, o.name, opts)
		if err != nil {
			if isPreconditionFailed(err) {
				return 0, fmt.Errorf("s3store: %s was replaced while open: %w", o.key, err)
			}
			return 0, mapErr(err, o.key)
		}
		o.body, o.bodyPos = body, o.pos
	}
	n, err := o.body.Read(p)
	o.pos += int64(n)
	o.bodyPos += int64(n)
	if err == io.EOF && o.pos < o.info.Size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.info.Size
	default:
		return 0, errors.New("s3store: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("s3store: negative position")
	}
	o.pos = offset
	return offset, nil
}

func (o *object) Close() error {
	if o.body != nil {
		return o.body.Close()
	}
	return nil
}

func mapErr(err error, key string) error {
	if isNotFound(err) {
		return derrors.WithCause(derrors.NotFound, err, "not found")
	}
	return fmt.Errorf("s3store: %s: %w", key, err)
}

func isNotFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound
}

func isPreconditionFailed(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed
}
