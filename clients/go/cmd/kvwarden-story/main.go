// Command kvwarden-story prefills "Once upon a time", streams a greedy continuation, forks it and
// truncates the fork back to the prompt, evicts, reads stats, releases, and prints what it got as
// JSON: every verb once, the Go client's end-to-end check (docs/clients.md).
//
//	kvwarden-story [-token TOKEN] [-ca CA.pem] [-tokens 20] ADDRESS SEQUENCE_ID
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kvwarden/clients/go/kvwarden"
	"kvwarden/clients/go/kvwardenv1"
)

type story struct {
	Model        string   `json:"model"`
	PromptTokens uint32   `json:"promptTokens"`
	TokenIDs     []uint32 `json:"tokenIds"`
	Text         string   `json:"text"`
	FinishReason string   `json:"finishReason"`
	ForkPosition uint32   `json:"forkPosition"`
	Truncated    uint32   `json:"truncatedPosition"`
	Dropped      uint32   `json:"droppedTokens"`
	EntriesAfter uint64   `json:"entriesAfterEviction"`
	StatsAt      uint32   `json:"statsPosition"`
	Released     bool     `json:"released"`
}

func main() {
	token := flag.String("token", "", "bearer token, for sidecars started with --auth-tokens")
	ca := flag.String("ca", "", "PEM CA bundle to verify a TLS sidecar with (--tls-cert); without it the channel is plaintext")
	tokens := flag.Uint("tokens", 20, "tokens to generate")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: kvwarden-story [-token TOKEN] [-ca CA.pem] [-tokens N] ADDRESS SEQUENCE_ID")
		os.Exit(2)
	}
	options := kvwarden.Options{Token: *token}
	if *ca != "" {
		pool, err := trusting(*ca)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		options.TLS = &tls.Config{RootCAs: pool}
	}
	result, err := tell(flag.Arg(0), flag.Arg(1), options, uint32(*tokens))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(result)
}

func trusting(caPath string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(filepath.Clean(caPath))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New(caPath + ": no PEM certificate in it")
	}
	return pool, nil
}

func tell(address, sequenceID string, options kvwarden.Options, tokens uint32) (*story, error) {
	client, err := kvwarden.Dial(address, options)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	info, err := client.Info(ctx)
	if err != nil {
		return nil, err
	}
	prefill, err := client.Prefill(ctx, &kvwardenv1.PrefillRequest{SequenceId: sequenceID, Text: "Once upon a time"})
	if err != nil {
		return nil, err
	}
	result := &story{Model: info.GetModel().GetName(), PromptTokens: prefill.GetPromptTokens(), TokenIDs: []uint32{}}
	var text strings.Builder
	err = client.Decode(ctx, &kvwardenv1.DecodeRequest{SequenceId: sequenceID, MaxNewTokens: tokens}, func(response *kvwardenv1.DecodeResponse) error {
		result.TokenIDs = append(result.TokenIDs, response.GetTokenId())
		text.WriteString(response.GetText())
		result.FinishReason = response.GetFinishReason().String()
		return nil
	})
	if err != nil {
		return nil, err
	}
	result.Text = text.String()
	if err := forkAndTruncate(ctx, client, sequenceID, prefill.GetPromptTokens(), result); err != nil {
		return nil, err
	}
	evicted, err := client.Evict(ctx, &kvwardenv1.EvictRequest{SequenceId: sequenceID, Eviction: &kvwardenv1.EvictionSpec{Policy: "streaming_llm", Budget: &kvwardenv1.EvictionSpec_MaxTokens{MaxTokens: 8}}})
	if err != nil {
		return nil, err
	}
	result.EntriesAfter = evicted.GetEviction().GetEntriesAfter()
	stats, err := client.Stats(ctx, &kvwardenv1.StatsRequest{SequenceId: sequenceID})
	if err != nil {
		return nil, err
	}
	result.StatsAt = stats.GetSequences()[0].GetPosition()
	released, err := client.Release(ctx, sequenceID)
	if err != nil {
		return nil, err
	}
	result.Released = released.GetFound()
	return result, nil
}

// forkAndTruncate copies the story and rolls the copy back to the prompt, then frees the copy.
func forkAndTruncate(ctx context.Context, client *kvwarden.Client, sequenceID string, promptTokens uint32, result *story) error {
	fork := sequenceID + "-fork"
	forked, err := client.Fork(ctx, sequenceID, fork)
	if err != nil {
		return err
	}
	result.ForkPosition = forked.GetPosition()
	truncated, err := client.Truncate(ctx, fork, promptTokens)
	if err != nil {
		return err
	}
	result.Truncated, result.Dropped = truncated.GetPosition(), truncated.GetDroppedTokens()
	_, err = client.Release(ctx, fork)
	return err
}
