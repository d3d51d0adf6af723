// Command inventory-plugin is the plugin of the e2e test of handler
// declarations. stock.add and stock.reserve declare the entity they share,
// inventory; stock.reserve rejects a reservation that is over the stock,
// and emits order.reserved for one it makes, a handler only emitted jobs
// may run. Every payload shape comes from a struct, so unknown fields are
// refused.
package main

import (
	"github.com/corralhq/corral/plugins/sdk"
)

// Add is the payload of stock.add.
type Add struct {
	Qty int64 `json:"qty"`
}

// Reserve is the payload of stock.reserve.
type Reserve struct {
	Qty   int64  `json:"qty"`
	Order string `json:"order"`
	Note  string `json:"note,omitempty"`
}

// Stock is the state of an inventory entity.
type Stock struct {
	OnHand   int64 `json:"on_hand"`
	Reserved int64 `json:"reserved"`
}

// Reserved is the payload of order.reserved.
type Reserved struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Order is the state of an order entity.
type Order struct {
	Lines int64 `json:"lines"`
	Qty   int64 `json:"qty"`
}

func main() {
	sdk.New("inventory", "0.1.0",
		sdk.Handler("stock.add", sdk.Typed(add), sdk.Entity("inventory"), sdk.ShapeOf[Add]()),
		sdk.Handler("stock.reserve", sdk.Typed(reserve), sdk.Entity("inventory"), sdk.ShapeOf[Reserve]()),
		sdk.Handler("order.reserved", sdk.Typed(reserved), sdk.Internal(), sdk.ShapeOf[Reserved]()),
	).Serve()
}

func add(c *sdk.Call, a Add, s Stock) (Stock, error) {
	if a.Qty <= 0 {
		return s, sdk.Failf("qty must be positive, got %d", a.Qty)
	}
	s.OnHand += a.Qty
	return s, c.SetResult(s)
}

func reserve(c *sdk.Call, r Reserve, s Stock) (Stock, error) {
	if r.Qty > s.OnHand {
		return s, sdk.Rejectf("out of stock: %d left", s.OnHand)
	}
	s.OnHand -= r.Qty
	s.Reserved += r.Qty
	if err := c.Emit("order.reserved", r.Order, Reserved{SKU: c.Key(), Qty: r.Qty}); err != nil {
		return s, err
	}
	return s, c.SetResult(s)
}

func reserved(c *sdk.Call, r Reserved, o Order) (Order, error) {
	o.Lines++
	o.Qty += r.Qty
	return o, nil
}
