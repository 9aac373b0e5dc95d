package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
)

// streamInFlight bounds the requests of one ModelStreamInfer stream that
// are processed at the same time; further requests wait to be read, so a
// fast sender is slowed down by gRPC flow control.
const streamInFlight = 16

// ModelStreamInfer runs the requests of a bidirectional stream
// concurrently (up to streamInFlight at a time) and sends each response as
// soon as it is ready, so responses may come in a different order than the
// requests; each carries its request's id (generated when the request has
// none). A request that fails is answered with error_message, plus an
// infer_response holding only the model name, version and id so the client
// can tell which request failed; the stream goes on. The stream ends when
// the client closes its side and every response is sent. If sending fails
// for good (the transport broke), the requests in flight are cancelled and
// the stream ends as soon as the client's side does.
func (s *Server) ModelStreamInfer(stream grpc.BidiStreamingServer[pb.ModelInferRequest, pb.ModelStreamInferResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()

	// One sender: stream.Send must not be called concurrently. After a
	// failed send it keeps draining results so no worker blocks forever.
	results := make(chan *pb.ModelStreamInferResponse, streamInFlight)
	sendDone := make(chan error, 1)
	go func() {
		var failed error
		for r := range results {
			if failed == nil {
				if failed = s.send(stream, r); failed != nil {
					cancel()
				}
			}
		}
		sendDone <- failed
	}()

	slots := make(chan struct{}, streamInFlight)
	var workers sync.WaitGroup
	var recvErr error
	for {
		req, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if err := ctx.Err(); err != nil {
			recvErr = status.FromContextError(err).Err()
			break
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			results <- s.streamOne(ctx, req)
			<-slots
		}()
	}
	workers.Wait()
	close(results)
	if err := <-sendDone; err != nil {
		return err
	}
	// recvErr is a status error already (the client went away, or the
	// stream's deadline passed).
	return recvErr
}

// streamOne answers one request of a stream.
func (s *Server) streamOne(ctx context.Context, req *pb.ModelInferRequest) *pb.ModelStreamInferResponse {
	id := req.Id
	if id == "" {
		id = s.newID()
	}
	resp, err := s.infer(ctx, req, id)
	if err != nil {
		return &pb.ModelStreamInferResponse{
			ErrorMessage:  status.Convert(s.fail("ModelStreamInfer", err)).Message(),
			InferResponse: &pb.ModelInferResponse{ModelName: req.ModelName, ModelVersion: req.ModelVersion, Id: id},
		}
	}
	return &pb.ModelStreamInferResponse{InferResponse: resp}
}

// send sends one response. A response gRPC refuses to send (larger than
// the client accepts, for instance) is replaced by an error_message for
// the same request; only when that fails too is the stream broken.
func (s *Server) send(stream grpc.BidiStreamingServer[pb.ModelInferRequest, pb.ModelStreamInferResponse], r *pb.ModelStreamInferResponse) error {
	err := stream.Send(r)
	if err == nil || r.ErrorMessage != "" || stream.Context().Err() != nil {
		return err
	}
	ir := r.GetInferResponse()
	s.log.Warn("grpc stream response not sent", "model", ir.GetModelName(), "id", ir.GetId(), "err", err)
	return stream.Send(&pb.ModelStreamInferResponse{
		ErrorMessage:  "sending the response failed: " + err.Error(),
		InferResponse: &pb.ModelInferResponse{ModelName: ir.GetModelName(), ModelVersion: ir.GetModelVersion(), Id: ir.GetId()},
	})
}
