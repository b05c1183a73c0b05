"""Topic vocabularies for the synthetic text catalog.

Each topic has a one-paragraph description (``Items.topic_text``, also the seed of user personas)
and word lists: nouns, verbs (third person), adjectives and named things. ``GENERIC`` holds filler
words shared by every topic, so that a topic is recoverable from an item's text but not from any
single word: titles and descriptions mix topic words, generic words and, now and then, a word
borrowed from another topic.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Topic", "TOPICS", "GENERIC_NOUNS", "GENERIC_ADJECTIVES", "GENERIC_VERBS", "AUDIENCES"]


@dataclass(frozen=True)
class Topic:
    """One topic's name, description and vocabulary."""

    name: str
    description: str
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    named: tuple[str, ...]


def _t(name: str, description: str, nouns: str, verbs: str, adjectives: str, named: str) -> Topic:
    split = lambda s: tuple(w.strip() for w in s.split(",") if w.strip())  # noqa: E731
    return Topic(name, description, split(nouns), split(verbs), split(adjectives), split(named))


TOPICS: tuple[Topic, ...] = (
    _t("cooking",
       "Recipes and kitchen craft: home cooks braise, roast and bake seasonal dishes, compare knives and "
       "cast-iron pans, and learn from chefs how sauces, spices and slow fermentation build flavour.",
       "recipe, sauce, oven, skillet, dough, broth, spice, kitchen, chef, dumpling, risotto, marinade, "
       "pastry, knife, stew, flavour, garlic, butter",
       "braises, roasts, simmers, bakes, seasons, whisks, ferments, plates",
       "crispy, savoury, tender, spicy, homemade, caramelised, aromatic, zesty",
       "sourdough starter, Dutch oven, miso glaze, Sunday roast, ramen broth, tarte tatin, "
       "paella pan, chimichurri"),
    _t("travel",
       "Journeys and destinations: travellers plan itineraries, book trains and ferries, find hostels "
       "and hidden beaches, and share tips on passports, luggage and local customs abroad.",
       "itinerary, passport, hostel, ferry, luggage, beach, airport, backpack, village, coastline, "
       "visa, suitcase, flight, harbour, trail, souvenir, guidebook",
       "explores, wanders, books, hikes, boards, discovers, roams, tours",
       "scenic, remote, coastal, budget, exotic, sunlit, overnight, walkable",
       "Lisbon, Kyoto, Patagonia, Amalfi coast, Trans-Siberian railway, Lonely Planet, Iceland ring road, "
       "Marrakech souk"),
    _t("technology",
       "Software and gadgets: engineers ship apps, debug code, compare laptops and smartphones, and "
       "argue about cloud servers, open-source frameworks, chips and artificial intelligence.",
       "software, laptop, smartphone, server, algorithm, database, startup, processor, app, compiler, "
       "cloud, chip, framework, keyboard, developer, network, bug",
       "debugs, deploys, compiles, encrypts, upgrades, codes, benchmarks, automates",
       "open-source, wireless, digital, encrypted, scalable, refurbished, programmable, quantum",
       "Linux kernel, Raspberry Pi, Python, Kubernetes, GPU cluster, USB-C, mechanical keyboard, Rust"),
    _t("football",
       "Football matches and clubs: strikers score goals, goalkeepers save penalties, managers change "
       "tactics, and fans debate transfers, league tables and the next cup final in the stadium.",
       "striker, goalkeeper, penalty, stadium, league, midfielder, transfer, referee, derby, cup, "
       "tactics, winger, pitch, supporters, kit, manager, goal",
       "scores, tackles, dribbles, defends, relegates, shoots, equalises, substitutes",
       "offside, unbeaten, promoted, relegated, attacking, defensive, last-minute, home",
       "Champions League, Premier League, World Cup, Bundesliga, Copa America, Ballon d'Or, El Clasico, "
       "VAR review"),
    _t("music",
       "Music and musicians: bands record albums, guitarists and drummers tour, producers mix tracks, "
       "and listeners discover vinyl, concerts, chords and the stories behind songs.",
       "album, guitar, drummer, melody, concert, vinyl, chorus, band, chord, synthesizer, lyrics, "
       "producer, rhythm, orchestra, playlist, song, bassline",
       "records, tours, strums, composes, mixes, sings, remixes, rehearses",
       "acoustic, melodic, live, psychedelic, orchestral, lo-fi, catchy, symphonic",
       "Abbey Road, Fender Stratocaster, Glastonbury, jazz quartet, Berlin techno, Motown, "
       "Beethoven sonata, Grammy"),
    _t("cinema",
       "Films and filmmaking: directors shoot scenes, actors win awards, critics review premieres, and "
       "audiences discuss screenplays, sequels, cinematography and the box office.",
       "director, screenplay, actor, premiere, sequel, cinematography, trailer, studio, festival, "
       "documentary, scene, audience, critic, blockbuster, soundtrack, cast, film",
       "directs, stars, reviews, premieres, shoots, edits, adapts, streams",
       "cinematic, animated, indie, noir, award-winning, dubbed, feature-length, suspenseful",
       "Cannes, Hitchcock, Studio Ghibli, Oscars, Sundance, Kurosawa, IMAX screening, Criterion"),
    _t("space",
       "Space and astronomy: telescopes observe galaxies and exoplanets, rockets launch satellites, "
       "astronauts orbit the planet, and astronomers explain black holes, comets and stars.",
       "telescope, galaxy, rocket, astronaut, orbit, planet, satellite, nebula, comet, exoplanet, "
       "asteroid, launch, spacecraft, star, cosmos, observatory, moon",
       "orbits, launches, observes, lands, detects, docks, collapses, explodes",
       "stellar, lunar, interstellar, cosmic, orbital, infrared, gravitational, galactic",
       "Mars rover, James Webb telescope, Andromeda, International Space Station, Apollo, Jupiter, "
       "Milky Way, Hubble"),
    _t("finance",
       "Money and markets: investors buy stocks and bonds, banks set interest rates, households budget "
       "and save for pensions, and analysts watch inflation, dividends and the economy.",
       "stock, bond, portfolio, dividend, inflation, mortgage, pension, budget, investor, bank, "
       "interest, market, savings, tax, index, loan, economy",
       "invests, saves, borrows, hedges, trades, compounds, diversifies, lends",
       "bullish, fiscal, volatile, taxable, monetary, passive, frugal, profitable",
       "Wall Street, index fund, central bank, S&P 500, Warren Buffett, bitcoin, compound interest, "
       "Federal Reserve"),
    _t("fitness",
       "Health and training: runners and lifters follow workout plans, stretch and recover, track "
       "heart rate and sleep, and learn how protein, endurance and strength change the body.",
       "workout, marathon, muscle, protein, gym, stretching, endurance, squat, cardio, injury, "
       "recovery, coach, heart rate, treadmill, yoga, strength, sleep",
       "trains, lifts, runs, stretches, recovers, sprints, burns, strengthens",
       "athletic, aerobic, lean, flexible, intense, injury-free, high-protein, mindful",
       "Boston Marathon, CrossFit, kettlebell, Couch to 5K, interval training, Pilates, deadlift, "
       "Tour de France"),
    _t("gardening",
       "Gardens and plants: gardeners sow seeds, prune roses, compost leaves and grow tomatoes, herbs "
       "and bulbs, and swap advice on soil, pests, greenhouses and the seasons.",
       "seedling, compost, soil, greenhouse, tomato, rose, bulb, hedge, orchard, herb, mulch, "
       "allotment, weeds, flowerbed, pollinator, shrub, vegetable",
       "sows, prunes, waters, grows, transplants, blooms, harvests, weeds",
       "perennial, organic, leafy, flowering, shady, drought-tolerant, fragrant, evergreen",
       "Chelsea Flower Show, raised bed, bonsai, rhododendron, wildflower meadow, kitchen garden, "
       "Japanese maple, hydrangea"),
    _t("gaming",
       "Video games: players level up, speedrun and raid dungeons, studios release consoles and "
       "expansions, and streamers debate multiplayer balance, quests and boss fights.",
       "console, multiplayer, quest, dungeon, controller, expansion, speedrun, streamer, level, boss, "
       "loot, esports, character, patch, arcade, open world, gamer",
       "levels, raids, respawns, streams, unlocks, crafts, grinds, plays",
       "pixelated, competitive, co-op, retro, immersive, role-playing, open-world, indie",
       "Nintendo Switch, Zelda, Minecraft, PlayStation, Elden Ring, Twitch, Dark Souls, League of Legends"),
    _t("fashion",
       "Clothes and style: designers show collections on the runway, stylists pair jackets and boots, "
       "and shoppers follow trends in fabrics, tailoring, sneakers and vintage finds.",
       "runway, collection, jacket, designer, fabric, sneakers, tailoring, wardrobe, denim, dress, "
       "boutique, accessories, model, silk, boots, trend, outfit",
       "designs, tailors, styles, layers, models, stitches, accessorises, dresses",
       "elegant, vintage, oversized, tailored, minimalist, chic, sustainable, bold",
       "Paris Fashion Week, Vogue, Chanel, little black dress, trench coat, Milan runway, Levi's, Met Gala"),
    _t("history",
       "History and the past: historians read archives about empires, battles and revolutions, "
       "archaeologists excavate ruins, and museums retell the lives of kings and ordinary people.",
       "empire, archive, battle, revolution, dynasty, archaeologist, ruins, manuscript, monarch, "
       "century, museum, treaty, castle, chronicle, artefact, war, kingdom",
       "excavates, conquers, rules, chronicles, rebels, invades, restores, founds",
       "ancient, medieval, imperial, colonial, forgotten, victorian, Byzantine, prehistoric",
       "Roman Empire, Magna Carta, Ming dynasty, French Revolution, Pompeii, Napoleon, Silk Road, "
       "Rosetta Stone"),
    _t("cars",
       "Cars and driving: drivers test engines, gearboxes and tyres, mechanics tune and repair, and "
       "enthusiasts compare electric vehicles, road trips, racing laps and horsepower.",
       "engine, gearbox, tyres, horsepower, sedan, mechanic, garage, dashboard, hybrid, motorway, "
       "exhaust, battery, lap, convertible, brakes, chassis, turbo",
       "drives, accelerates, tunes, overtakes, brakes, restores, races, refuels",
       "electric, turbocharged, four-wheel-drive, fuel-efficient, classic, sporty, automatic, rugged",
       "Formula One, Porsche 911, Tesla, Nurburgring, Land Rover, Le Mans, Mustang, Top Gear"),
    _t("pets",
       "Pets and animals: owners train puppies, groom cats, visit the vet, and trade tips on "
       "treats, leashes, aquariums, adoption and what a pet's behaviour means.",
       "puppy, kitten, vet, leash, aquarium, parrot, treats, litter, groomer, breed, collar, "
       "rabbit, adoption, paws, kennel, hamster, shelter",
       "barks, purrs, fetches, grooms, adopts, cuddles, sniffs, trains",
       "furry, playful, loyal, house-trained, fluffy, curious, rescued, cuddly",
       "golden retriever, Maine Coon, border collie, goldfish, dachshund, Siamese cat, guinea pig, "
       "beagle"),
    _t("literature",
       "Books and writing: novelists draft chapters, poets publish collections, readers join book "
       "clubs, and critics argue about plots, characters, translations and literary prizes.",
       "novel, poet, chapter, manuscript, memoir, bookshop, paperback, plot, narrator, anthology, "
       "library, author, poetry, fiction, translation, editor, prose",
       "writes, publishes, narrates, translates, reads, drafts, rhymes, edits",
       "literary, lyrical, dystopian, bestselling, gothic, epistolary, poetic, fictional",
       "Booker Prize, Tolstoy, Jane Austen, Penguin Classics, Shakespeare sonnet, Gabriel Garcia Marquez, "
       "book club, Nobel laureate"),
    _t("climate",
       "Climate and nature: scientists measure warming oceans and melting glaciers, communities build "
       "solar and wind power, and conservationists protect forests, wetlands and wildlife.",
       "glacier, emissions, forest, solar panel, wind turbine, wetland, drought, carbon, wildlife, "
       "ocean, recycling, biodiversity, flood, reef, heatwave, rainforest, habitat",
       "warms, melts, recycles, conserves, emits, floods, rewilds, protects",
       "renewable, sustainable, endangered, coastal, carbon-neutral, arid, polluted, green",
       "Amazon rainforest, Great Barrier Reef, Paris Agreement, Arctic sea ice, IPCC report, "
       "national park, coral bleaching, Greenpeace"),
    _t("art",
       "Art and design: painters and sculptors work in studios, galleries curate exhibitions, and "
       "visitors look at canvases, prints, ceramics and photography from old masters to street artists.",
       "painting, sculpture, gallery, canvas, exhibition, studio, portrait, mural, ceramics, "
       "brushstroke, curator, sketch, print, watercolour, installation, photography, easel",
       "paints, sculpts, curates, sketches, exhibits, carves, draws, frames",
       "abstract, impressionist, surreal, contemporary, figurative, baroque, monochrome, avant-garde",
       "Louvre, Van Gogh, Frida Kahlo, Tate Modern, Bauhaus, Banksy, Sistine Chapel, Picasso"),
)

GENERIC_NOUNS: tuple[str, ...] = tuple(
    "guide, story, week, people, way, idea, answer, list, mistake, lesson, question, moment, "
    "beginner, expert, secret, trick, review, update, decade, weekend, detail, look, friend, family, "
    "world, city, budget, plan, season, community, year, choice".split(", "))
GENERIC_ADJECTIVES: tuple[str, ...] = tuple(
    "essential, surprising, simple, honest, complete, quick, little-known, ultimate, practical, "
    "new, best, classic, everyday, unexpected, modern, popular, curious, small, big, real".split(", "))
GENERIC_VERBS: tuple[str, ...] = tuple(
    "changes, explains, shows, reveals, tries, finds, makes, helps, says, asks, tests, "
    "compares, learns, shares".split(", "))
AUDIENCES: tuple[str, ...] = tuple(
    "beginners, families, experts, students, everyone, newcomers, weekend warriors, "
    "the curious, busy parents, old hands".split(", "))
