// Package kvwarden is a small client for the kvwarden sidecar's KvCache service: the same verbs as
// the TypeScript client (docs/clients.md), over the generated stubs in kvwardenv1.
package kvwarden

import (
	"context"
	"crypto/tls"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"kvwarden/clients/go/kvwardenv1"
)

// Options says how to reach the sidecar; the zero value is plaintext without a token (loopback).
type Options struct {
	// Token is sent as `authorization: Bearer TOKEN`, for sidecars started with --auth-tokens.
	Token string
	// TLS, when set, encrypts the channel (sidecars started with --tls-cert/--tls-key).
	TLS *tls.Config
}

// Client calls one sidecar; Raw gives the generated stub for anything the verbs leave out.
type Client struct {
	conn *grpc.ClientConn
	Raw  kvwardenv1.KvCacheClient
}

// Dial connects lazily to address (host:port); calls wait for the connection.
func Dial(address string, options Options) (*Client, error) {
	dialOptions := []grpc.DialOption{grpc.WithInsecure()}
	if options.TLS != nil {
		dialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(options.TLS))}
	}
	if options.Token != "" {
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(bearerToken(options.Token)))
	}
	conn, err := grpc.Dial(address, dialOptions...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, Raw: kvwardenv1.NewKvCacheClient(conn)}, nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Prefill feeds tokens or text into a sequence, creating it if the id is new.
func (c *Client) Prefill(ctx context.Context, request *kvwardenv1.PrefillRequest) (*kvwardenv1.PrefillResponse, error) {
	return c.Raw.Prefill(ctx, request)
}

// Decode streams generated tokens to onToken; the last carries the finish reason. An error from
// onToken, or a cancelled ctx, stops generation and is returned.
func (c *Client) Decode(ctx context.Context, request *kvwardenv1.DecodeRequest, onToken func(*kvwardenv1.DecodeResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the stream on the sidecar when onToken gives up early
	stream, err := c.Raw.Decode(ctx, request)
	if err != nil {
		return err
	}
	for {
		token, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := onToken(token); err != nil {
			return err
		}
	}
}

// Evict applies an eviction policy to a sequence's cache now.
func (c *Client) Evict(ctx context.Context, request *kvwardenv1.EvictRequest) (*kvwardenv1.EvictResponse, error) {
	return c.Raw.Evict(ctx, request)
}

// Stats reports memory use, globally and (with a sequence id) per layer and KV head.
func (c *Client) Stats(ctx context.Context, request *kvwardenv1.StatsRequest) (*kvwardenv1.StatsResponse, error) {
	return c.Raw.Stats(ctx, request)
}

// Release frees a sequence; an unknown id is not an error.
func (c *Client) Release(ctx context.Context, sequenceID string) (*kvwardenv1.ReleaseResponse, error) {
	return c.Raw.Release(ctx, &kvwardenv1.ReleaseRequest{SequenceId: sequenceID})
}

// Fork copies a sequence, cache and all, under a new id.
func (c *Client) Fork(ctx context.Context, sequenceID, newSequenceID string) (*kvwardenv1.ForkResponse, error) {
	return c.Raw.Fork(ctx, &kvwardenv1.ForkRequest{SequenceId: sequenceID, NewSequenceId: newSequenceID})
}

// Truncate rolls a sequence back to its first length tokens.
func (c *Client) Truncate(ctx context.Context, sequenceID string, length uint32) (*kvwardenv1.TruncateResponse, error) {
	return c.Raw.Truncate(ctx, &kvwardenv1.TruncateRequest{SequenceId: sequenceID, Length: length})
}

// Info describes the loaded model, the limits and the policies on offer.
func (c *Client) Info(ctx context.Context) (*kvwardenv1.InfoResponse, error) {
	return c.Raw.Info(ctx, &kvwardenv1.InfoRequest{})
}
