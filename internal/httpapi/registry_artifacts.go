package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/kilnai/kiln/internal/artifact"
)

// Artifacts is what the registry API needs from the blob store (an
// *artifact.Store).
type Artifacts interface {
	Put(ctx context.Context, r io.Reader, expect artifact.Digest, maxSize int64) (artifact.Info, error)
	PutTar(ctx context.Context, r io.Reader, maxSize int64) (artifact.Info, error)
	Open(ctx context.Context, d artifact.Digest) (io.ReadCloser, artifact.Info, error)
	Stat(ctx context.Context, d artifact.Digest) (artifact.Info, error)
	Verify(ctx context.Context, d artifact.Digest) error
	IsManifest(ctx context.Context, d artifact.Digest) (bool, error)
	Manifest(ctx context.Context, d artifact.Digest) (*artifact.Manifest, error)
	WriteTar(ctx context.Context, d artifact.Digest, w io.Writer) error
}

var _ Artifacts = (*artifact.Store)(nil)

// artifactView is the answer to an upload and to a stat.
type artifactView struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Kind   string `json:"kind"` // file or directory
}

// uploadArtifact stores the body (PUT /api/v1/artifacts): the raw bytes
// of one file, or with ?format=tar a tar archive of a directory. An
// expected digest (?digest= or the X-Kiln-Digest header) is checked.
func (s *Server) uploadArtifact(w http.ResponseWriter, r *http.Request) {
	info, kind, err := s.storeUpload(r.Context(), r, r.Body, r.URL.Query().Get("format"), expectedDigest(r))
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, artifactView{Digest: info.Digest.String(), Size: info.Size, Kind: kind})
}

func expectedDigest(r *http.Request) string {
	if d := r.URL.Query().Get("digest"); d != "" {
		return d
	}
	return r.Header.Get("X-Kiln-Digest")
}

// storeUpload streams body into the artifact store within the upload
// limit; format is "" or "file" (raw bytes) or "tar" (a directory).
func (s *Server) storeUpload(ctx context.Context, r *http.Request, body io.Reader, format, expect string) (artifact.Info, string, error) {
	limit := s.opts.MaxUploadSize
	if r.ContentLength > limit {
		return artifact.Info{}, "", fmt.Errorf("%w: %d bytes announced, the limit is %d", artifact.ErrTooLarge, r.ContentLength, limit)
	}
	switch format {
	case "", "file":
		info, err := s.opts.Artifacts.Put(ctx, body, artifact.Digest(expect), limit)
		return info, "file", err
	case "tar":
		info, err := s.opts.Artifacts.PutTar(ctx, body, limit)
		if err != nil {
			return info, "", err
		}
		if expect != "" {
			want, err := artifact.ParseDigest(expect)
			if err != nil {
				return artifact.Info{}, "", err
			}
			if want != info.Digest {
				return artifact.Info{}, "", fmt.Errorf("%w: the directory's manifest is %s, expected %s", artifact.ErrDigestMismatch, info.Digest, want)
			}
		}
		return info, "directory", nil
	default:
		return artifact.Info{}, "", fmt.Errorf("%w: format %q: want file or tar", ErrBadRequest, format)
	}
}

// downloadArtifact serves GET /api/v1/artifacts/{digest}.
func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request) {
	d, err := artifact.ParseDigest(r.PathValue("digest"))
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	s.serveArtifact(w, r, d)
}

// serveArtifact writes a blob after verifying it, so a corrupt blob is an
// error status rather than a truncated 200. A directory manifest is sent
// as JSON, or with ?format=tar as a tar of its files.
func (s *Server) serveArtifact(w http.ResponseWriter, r *http.Request, d artifact.Digest) {
	ctx := r.Context()
	if err := s.opts.Artifacts.Verify(ctx, d); err != nil {
		s.registryFail(w, r, err)
		return
	}
	w.Header().Set("X-Kiln-Digest", d.String())
	w.Header().Set("ETag", `"`+d.String()+`"`)
	if r.URL.Query().Get("format") == "tar" {
		if _, err := s.opts.Artifacts.Manifest(ctx, d); err != nil {
			s.registryFail(w, r, fmt.Errorf("%w: format=tar needs a directory artifact: %w", ErrBadRequest, err))
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		if err := s.opts.Artifacts.WriteTar(ctx, d, w); err != nil {
			// Headers are sent; the client sees a truncated archive.
			s.log.Error("artifact download failed mid-stream", "digest", d, "err", err)
		}
		return
	}
	rc, info, err := s.opts.Artifacts.Open(ctx, d)
	if err != nil {
		s.registryFail(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, rc); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("artifact download failed mid-stream", "digest", d, "err", err)
	}
}
